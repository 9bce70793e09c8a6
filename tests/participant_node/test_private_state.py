"""Node state on disk is private: folders 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from participant_node.matching.config import MatchingConfig
from participant_node.matching.probing_guard import ProbingGuard
from participant_node.private_state import private_directory, private_file, write_private_file
from participant_node.training.privacy_accountant import NodePrivacyAccountant


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o000)  # the worst case: nothing masked by the process
    yield
    os.umask(previous)


def test_created_private(tmp_path: Path) -> None:
    folder = private_directory(tmp_path / "state")
    assert _mode(folder) == 0o700
    assert _mode(private_file(folder / "store.sqlite")) == 0o600
    assert _mode(write_private_file(folder / "key", b"secret")) == 0o600
    assert (folder / "key").read_bytes() == b"secret"


def test_a_looser_existing_file_is_tightened_but_an_existing_folder_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    loose = shared / "ledger.sqlite"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    private_directory(shared)
    assert _mode(shared) == 0o755  # an operator's folder, e.g. /tmp: not ours to change
    assert _mode(private_file(loose)) == 0o600


def test_privacy_accountant_file_is_private(tmp_path: Path) -> None:
    accountant = NodePrivacyAccountant(tmp_path / "node" / "privacy_accountant.json")
    accountant.charge(
        dataset="p",
        purpose="analytics.churn_model",
        job_id="job-1",
        noise_multiplier=1.0,
        sample_rate=0.01,
        steps=10,
        delta=1e-5,
        epsilon_cap=10.0,
    )
    assert _mode(tmp_path / "node") == 0o700
    assert _mode(tmp_path / "node" / "privacy_accountant.json") == 0o600


def test_probing_guard_database_is_private(tmp_path: Path) -> None:
    guard = ProbingGuard(tmp_path / "psi_runs.sqlite", MatchingConfig(partner_id="p"))
    guard.close()
    assert _mode(tmp_path / "psi_runs.sqlite") == 0o600
