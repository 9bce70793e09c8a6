"""Only approved code runs at a node: the check of a Flower App's FAB hash and the launcher's environment.

The SuperNode end to end (a real SuperLink refusing an unapproved app) is in
``tests/deploy/test_approved_apps_and_secure_sum.py``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from loyalfed.flower_app import flower_app_dir, flower_app_hash
from participant_node import approved_apps
from participant_node.approved_apps import (
    APPROVED_APPS_ENV,
    RUNNING_APP_ENV,
    UnapprovedAppError,
    approved_from_environment,
    check_app,
    launcher_environment,
)


def test_the_check_names_the_hash_and_the_rule() -> None:
    approved = frozenset({hashlib.sha256(b"approved fab").hexdigest()})
    assert check_app(b"approved fab", approved) == hashlib.sha256(b"approved fab").hexdigest()
    with pytest.raises(UnapprovedAppError, match=hashlib.sha256(b"other fab").hexdigest()) as refused:
        check_app(b"other fab", approved)
    assert "not approved at this node" in str(refused.value)
    with pytest.raises(UnapprovedAppError):
        check_app(b"approved fab", frozenset())  # nothing approved: every app is refused


def test_the_launcher_environment_puts_the_launcher_first(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    env = launcher_environment({"PATH": "/usr/bin"}, launcher_dir=tmp_path, approved=[digest.upper()])
    assert env["PATH"].split(":")[0] == str(tmp_path)
    assert approved_from_environment(env) == {digest}
    with pytest.raises(ValueError, match="64 hex digits"):
        approved_from_environment({APPROVED_APPS_ENV: "not-a-hash"})


def test_the_shipped_app_hash_is_the_hash_of_its_fab() -> None:
    # The node approves this by default; flwr run builds the same bytes (fixed entry dates).
    assert flower_app_hash() == hashlib.sha256(build_fab_from_disk(flower_app_dir())).hexdigest()


def test_the_launcher_names_the_app_it_installed_for_the_node_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ClientApp tells the node service this hash; the gate holds it to the job's signed policy."""
    monkeypatch.delenv(RUNNING_APP_ENV, raising=False)
    installed: list[bytes] = []
    install = approved_apps._approving(installed.append, frozenset({hashlib.sha256(b"fab").hexdigest()}))
    with pytest.raises(UnapprovedAppError):
        install(b"other fab")
    assert installed == [] and RUNNING_APP_ENV not in os.environ
    install(b"fab")
    assert installed == [b"fab"]
    assert os.environ[RUNNING_APP_ENV] == hashlib.sha256(b"fab").hexdigest()
