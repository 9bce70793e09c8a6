"""The coordinator's privacy-budget ledger on real SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_errors import BudgetExceededError

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> BudgetLedger:
    book = BudgetLedger(f"sqlite:///{tmp_path / 'budget.sqlite'}", default_cap=10.0)
    yield book
    book.close()


def test_reservation_is_all_or_nothing_and_names_the_partner(ledger: BudgetLedger) -> None:
    ledger.set_cap("north", 4.0, year=2026, set_by="officer-north")
    ledger.reserve(
        ["north", "south"], job_id="j1", purpose="analytics.churn_model", epsilon=3.0, delta=1e-5, now=NOW
    )
    with pytest.raises(
        BudgetExceededError, match=r"refused before any training.*north: spent ε=3\.00 of its 2026 cap"
    ):
        ledger.reserve(
            ["north", "south"], job_id="j2", purpose="analytics.churn_model", epsilon=3.0, delta=1e-5, now=NOW
        )
    # Nothing of j2 was recorded, on either dataset.
    assert ledger.spent("south", year=2026) == pytest.approx(3.0)
    assert [c[0] for c in ledger.charges("south", year=2026)] == ["j1"]


def test_settle_replaces_the_reservation_and_caps_are_per_year(ledger: BudgetLedger) -> None:
    ledger.reserve(["north"], job_id="j1", purpose="analytics.churn_model", epsilon=3.0, delta=1e-5, now=NOW)
    ledger.settle("north", job_id="j1", epsilon_spent=1.2, now=NOW)
    assert ledger.charges("north", year=2026) == [("j1", "analytics.churn_model", 1.2, "spent")]
    assert ledger.remaining("north", year=2026) == pytest.approx(8.8)
    assert ledger.remaining("north", year=2027) == pytest.approx(10.0)


def test_invalid_caps_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="default_cap must be positive"):
        BudgetLedger(f"sqlite:///{tmp_path / 'x.sqlite'}", default_cap=0)


def _reserve_and_hang(url: str, ready: Path) -> None:
    """A job process: reserve, say so, then wait to be killed (SIGKILL gives it no chance to settle)."""
    import time

    book = BudgetLedger(url, default_cap=10.0)
    book.reserve(
        ["north", "south"], job_id="dead-job", purpose="analytics.churn_model", epsilon=4.0, delta=1e-5
    )
    ready.write_text("reserved")
    time.sleep(120)


def _kill_after_reserving(url: str, tmp_path: Path) -> None:
    import multiprocessing
    import os
    import signal
    import time

    ready = tmp_path / "ready"
    job = multiprocessing.get_context("fork").Process(target=_reserve_and_hang, args=(url, ready))
    job.start()
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.exists() and job.pid is not None
    os.kill(job.pid, signal.SIGKILL)
    job.join(timeout=10)
    assert job.exitcode == -signal.SIGKILL


def test_dead_jobs_reservation_is_settled_from_the_node_accountants_at_start_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'budget.sqlite'}"
    _kill_after_reserving(url, tmp_path)
    ledger = BudgetLedger(url, default_cap=10.0)
    year = datetime.now(UTC).year
    assert ledger.spent("north", year=year) == pytest.approx(4.0)  # still held by the dead job
    # What each node's own accountant recorded for the job: north trained two rounds, south none.
    reported = {("dead-job", "north"): 1.37, ("dead-job", "south"): 0.0}
    recovered = ledger.recover(node_spent=lambda job, partner: reported[(job, partner)])
    assert sorted((r.partner_id, r.status, r.charged) for r in recovered) == [
        ("north", "spent", pytest.approx(1.37)),
        ("south", "released", 0.0),
    ]
    assert ledger.spent("north", year=year) == pytest.approx(1.37)
    assert ledger.spent("south", year=year) == 0.0
    assert ledger.recover() == []  # settled once: a second start-up finds nothing to do
    ledger.close()


def test_without_a_node_report_a_dead_job_keeps_its_reservation_provisionally(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'budget.sqlite'}"
    _kill_after_reserving(url, tmp_path)
    ledger = BudgetLedger(url, default_cap=10.0)
    year = datetime.now(UTC).year
    (north, _south) = sorted(ledger.recover(), key=lambda r: r.partner_id)
    assert (north.status, north.charged) == ("spent", 4.0) and "no accountant report" in north.reason
    # The node's figure arrives later and replaces the provisional charge, even though it is lower.
    ledger.settle("north", job_id="dead-job", epsilon_spent=0.9)
    assert ledger.spent("north", year=year) == pytest.approx(0.9)
    assert ledger.spent("south", year=year) == pytest.approx(4.0)
    ledger.close()


def test_a_live_owner_keeps_its_reservation_and_a_remote_one_lives_by_its_lease(tmp_path: Path) -> None:
    from datetime import timedelta

    from coordinator.budget_ledger import ReservationOwner

    ledger = BudgetLedger(f"sqlite:///{tmp_path / 'budget.sqlite'}", lease=timedelta(minutes=5))
    ledger.reserve(
        ["north"], job_id="mine", purpose="analytics.churn_model", epsilon=1.0, delta=1e-5, now=NOW
    )
    remote = ReservationOwner(host="another-coordinator.example", pid=4242)
    ledger.reserve(
        ["north"],
        job_id="remote",
        purpose="analytics.churn_model",
        epsilon=1.0,
        delta=1e-5,
        now=NOW,
        owner=remote,
    )
    assert ledger.recover(NOW + timedelta(hours=1), node_spent=lambda j, p: None)[0].job_id == "remote"
    ledger.reserve(
        ["south"],
        job_id="beating",
        purpose="analytics.churn_model",
        epsilon=1.0,
        delta=1e-5,
        now=NOW,
        owner=remote,
    )
    assert ledger.heartbeat("beating", now=NOW + timedelta(minutes=4)) == 1
    assert ledger.recover(NOW + timedelta(minutes=8)) == []  # lease renewed until minute 9
    assert [c[3] for c in ledger.charges("north", year=2026)] == ["reserved", "spent"]
    ledger.close()


def test_settle_never_lowers_a_node_report_and_release_frees_only_open_reservations(
    ledger: BudgetLedger,
) -> None:
    ledger.reserve(
        ["north", "south"], job_id="j1", purpose="analytics.churn_model", epsilon=3.0, delta=1e-5, now=NOW
    )
    ledger.settle("north", job_id="j1", epsilon_spent=2.0, now=NOW)
    ledger.settle("north", job_id="j1", epsilon_spent=1.5, now=NOW)  # a stale, late reply
    assert ledger.spent("north", year=2026) == pytest.approx(2.0)
    assert ledger.release("j1", now=NOW) == 1  # south only: north is settled
    assert ledger.spent("south", year=2026) == 0.0
    ledger.settle("south", job_id="j1", epsilon_spent=0.4, now=NOW)  # a node that did train after all
    assert ledger.spent("south", year=2026) == pytest.approx(0.4)


def test_bad_figures_and_unknown_reservations_are_refused(ledger: BudgetLedger) -> None:
    from coordinator.budget_ledger import BudgetLedgerError

    with pytest.raises(ValueError, match="epsilon must be a finite positive"):
        ledger.reserve(
            ["north"], job_id="j", purpose="analytics.churn_model", epsilon=float("nan"), delta=1e-5
        )
    with pytest.raises(BudgetLedgerError, match="holds no budget on north"):
        ledger.settle("north", job_id="nobody", epsilon_spent=1.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.reserve(["north"], job_id="j", purpose="p", epsilon=1.0, delta=1e-5, now=datetime(2026, 1, 1))
    ledger.reserve(["north"], job_id="j", purpose="analytics.churn_model", epsilon=1.0, delta=1e-5, now=NOW)
    with pytest.raises(BudgetLedgerError, match="already holds a reservation on north"):
        ledger.reserve(
            ["north"], job_id="j", purpose="analytics.churn_model", epsilon=1.0, delta=1e-5, now=NOW
        )


def test_a_ledger_file_of_the_first_release_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE budget_charges (id INTEGER PRIMARY KEY, partner_id VARCHAR, year INTEGER,"
            " job_id VARCHAR, purpose VARCHAR, epsilon FLOAT, delta FLOAT, status VARCHAR, charged_at TEXT)"
        )
        db.execute(
            "INSERT INTO budget_charges VALUES (1, 'north', 2026, 'stuck', 'analytics.churn_model',"
            " 3.0, 1e-5, 'reserved', '2026-01-01T00:00:00+00:00')"
        )
    ledger = BudgetLedger(f"sqlite:///{path}")
    (recovery,) = ledger.recover(NOW)  # an ownerless reservation of the old ledger is abandoned
    assert (recovery.job_id, recovery.charged) == ("stuck", 3.0)
    ledger.close()
