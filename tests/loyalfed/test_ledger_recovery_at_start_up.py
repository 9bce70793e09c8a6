"""A `loyalfed train` killed with SIGKILL: the next run settles its reservation from the node accountants."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.budget_ledger import BudgetLedger
from loyalfed.federated_run import node_accountant_spent
from participant_node.data import load_federation
from participant_node.training.privacy_accountant import NodePrivacyAccountant
from policies.purpose import Purpose


def _federation(tmp_path: Path) -> Path:
    federation = tmp_path / "federation"
    for partner in ("north", "south"):
        (federation / partner).mkdir(parents=True)
        (federation / partner / "members.csv").write_text("member_id,joined_at\nm1,2020-01-01\n")
    return federation


def _reserve_and_hang(url: str, ready: Path) -> None:
    ledger = BudgetLedger(url)
    ledger.reserve(
        ["north", "south"], job_id="killed", purpose="analytics.churn_model", epsilon=3.0, delta=1e-5
    )
    ready.touch()
    time.sleep(120)


def test_the_next_run_settles_a_killed_jobs_reservation_from_each_node_accountant(tmp_path: Path) -> None:
    federation = _federation(tmp_path)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ready = tmp_path / "ready"
    job = multiprocessing.get_context("fork").Process(target=_reserve_and_hang, args=(url, ready))
    job.start()
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # North's node charged its own accountant for one round before the job was killed; south never trained.
    accountant = NodePrivacyAccountant(federation / "north" / ".loyalfed" / "privacy_accountant.json")
    spent = accountant.charge(
        dataset="north", purpose=Purpose.CHURN_MODEL, job_id="killed", noise_multiplier=1.1,
        sample_rate=0.05, steps=20, delta=1e-5, epsilon_cap=3.0,
    )  # fmt: skip
    assert job.pid is not None
    os.kill(job.pid, signal.SIGKILL)
    job.join(timeout=10)
    ledger = BudgetLedger(url)
    year = datetime.now(UTC).year
    assert ledger.spent("north", year=year) == pytest.approx(3.0)
    recovered = ledger.recover(node_spent=node_accountant_spent(load_federation(federation)))
    assert {(r.partner_id, r.status) for r in recovered} == {("north", "spent"), ("south", "released")}
    assert ledger.spent("north", year=year) == pytest.approx(spent) and 0 < spent < 3.0
    assert ledger.spent("south", year=year) == 0.0
    ledger.close()
