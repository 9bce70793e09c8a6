"""The budget ledger under concurrent reservers in separate processes, on SQLite and PostgreSQL.

Every process opens its own ledger on the same database, waits at a barrier, and reserves on the
same two partner datasets (in its own order of naming them). The cap check and the reservation are
one transaction, so the charges never exceed either cap, and exactly as many jobs succeed as fit.
"""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_errors import BudgetExceededError

NOW = datetime(2026, 3, 1, tzinfo=UTC)
PROCESSES = 20
CAP = 10.0
JOB_EPSILON = 1.5  # 6 jobs fit in 10 (9.0); a 7th would reach 10.5


def _reserver(url: str, index: int, barrier: Any, results: Any) -> None:
    ledger = BudgetLedger(url, default_cap=CAP)
    partners = ["north", "south"]
    random.Random(index).shuffle(partners)
    barrier.wait(timeout=60)
    try:
        ledger.reserve(
            partners,
            job_id=f"job-{index}",
            purpose="analytics.churn_model",
            epsilon=JOB_EPSILON,
            delta=1e-5,
            now=NOW,
        )
        results.put((index, "reserved"))
    except BudgetExceededError:
        results.put((index, "refused"))
    except Exception as err:  # reported to the parent, which fails the test with it
        results.put((index, f"error: {type(err).__name__}: {err}"))
    finally:
        ledger.close()


def test_twenty_concurrent_reservations_never_overspend(database_url: str) -> None:
    ledger_url = database_url
    BudgetLedger(ledger_url, default_cap=CAP).close()  # tables exist before the race starts
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=_reserver, args=(ledger_url, i, barrier, results)) for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert not [o for o in outcomes.values() if o.startswith("error")], outcomes
    reserved = [i for i, o in outcomes.items() if o == "reserved"]
    ledger = BudgetLedger(ledger_url, default_cap=CAP)
    try:
        for partner in ("north", "south"):
            assert ledger.spent(partner, year=2026) <= CAP
            assert ledger.spent(partner, year=2026) == pytest.approx(len(reserved) * JOB_EPSILON)
            assert sorted(c[0] for c in ledger.charges(partner, year=2026)) == sorted(
                f"job-{i}" for i in reserved
            )
        assert len(reserved) == int(CAP // JOB_EPSILON)
    finally:
        ledger.close()
