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
