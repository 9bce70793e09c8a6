"""The node's vectorised opening ledger equals the programme's pure rules (policies.loyalty_programme)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from participant_node.points.interchange_rows import ISSUANCE_ACCOUNT
from participant_node.points.ledger import Ledger
from participant_node.points.opening import issue_opening_balances, opening_from_transactions
from policies.loyalty_programme import LoyaltyProgramme, Purchase, accrue, opening_balances

PROGRAMME = LoyaltyProgramme(programme_id="fm", partner="fm", tier_window_days=30, expiry_months=2)
T0 = datetime(2025, 1, 31)

purchases = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 120), st.integers(-5_000, 1_500_000)),
    max_size=40,
)


@settings(max_examples=25, deadline=None)
@given(purchases, st.integers(0, 150))
def test_vectorised_opening_equals_the_pure_rules(rows: list[tuple[str, int, int]], day: int) -> None:
    at = T0 + timedelta(days=day)
    frame = pd.DataFrame(
        {
            "member_id": [m for m, _, _ in rows],
            "timestamp": [T0 + timedelta(days=d) for _, d, _ in rows],
            "amount": [c / 100 for _, _, c in rows],
        }
    )
    pure = opening_balances(
        accrue(
            PROGRAMME, [Purchase(m, T0 + timedelta(days=d), Decimal(c) / 100) for m, d, c in rows if d <= day]
        ),
        at=at,
    )
    fast, _, unusable = opening_from_transactions(PROGRAMME, frame, at=at)
    assert unusable == 0
    assert fast == {m: p for m, p in pure.items() if p > 0}


def test_issuing_twice_for_the_same_moment_changes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", synchronous="NORMAL")
    ledger.open_accounts([(ISSUANCE_ACCOUNT, "issuance", None, 0)])  # type: ignore[list-item]
    frame = pd.DataFrame({"member_id": ["m1", "m2"], "timestamp": [T0, T0], "amount": [120.5, 30]})
    first = issue_opening_balances(ledger, PROGRAMME, frame, at=T0 + timedelta(days=1))
    again = issue_opening_balances(ledger, PROGRAMME, frame, at=T0 + timedelta(days=1))
    assert (first.members, first.points, first.issued) == (2, 150, 2)
    assert (again.issued, again.already_issued) == (0, 2)
    assert ledger.verify().ok
