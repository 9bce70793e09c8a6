"""The per-organisation compose files: valid for a real Compose client, every bind read-only.

Which keys each organisation's containers can read is checked on folders built with the real
``loyalfed pki`` commands (``test_key_custody``).

Compose resolves the files (variables, relative paths) exactly as it would on the host; the test
then reads every bind mount from the resolved configuration.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deploy import compose_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ORGANISATIONS = ("coordinator-org", "partner-org")
FILLED = {"LOYALFED_NODE_TOKEN": "node-token-from-the-federation-administrator"}


def _resolved(tmp_path: Path, organisation: str) -> dict[str, object]:
    folder = tmp_path / organisation
    shutil.copytree(DEPLOY / organisation, folder)
    return compose_config.resolve(folder, FILLED)


def _mounts(config: dict[str, object]) -> dict[str, list[tuple[str, str, bool]]]:
    """(source, target, read-only) of every file or folder bind, per service."""
    binds: dict[str, list[tuple[str, str, bool]]] = {}
    for service, found in compose_config.mounts(config).items():
        binds[service] = [(m.source, m.target, m.read_only) for m in found if m.is_bind]
    return binds


@pytest.mark.parametrize("organisation", ORGANISATIONS)
def test_compose_accepts_each_organisations_file(tmp_path: Path, organisation: str) -> None:
    config = _resolved(tmp_path, organisation)
    assert config["services"]


def test_every_bind_is_read_only_and_the_data_is_mounted_once(tmp_path: Path) -> None:
    for organisation in ORGANISATIONS:
        for mounts in _mounts(_resolved(tmp_path, organisation)).values():
            assert all(read_only for _, _, read_only in mounts), mounts
    partner = _mounts(_resolved(tmp_path / "again", "partner-org"))
    assert [t for m in partner.values() for _, t, _ in m].count("/data") == 1
