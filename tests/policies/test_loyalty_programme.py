"""Programme rules: tiers from trailing spend, multipliers, rounding, expiry, FIFO lapses."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.loyalty_programme import (
    LoyaltyProgramme,
    ProgrammeError,
    Purchase,
    Tier,
    accrue,
    add_months,
    expired_points,
    opening_balances,
)

PROGRAMME = LoyaltyProgramme(programme_id="freshmart-rewards", partner="freshmart")
T0 = datetime(2024, 1, 1)


def test_default_tiers_and_multipliers() -> None:
    expected = [("Ordinary", 0, 1.0), ("Silver", 3_000, 1.2), ("Gold", 10_000, 1.5), ("Diamond", 30_000, 2.0)]
    assert [(t.name, int(t.min_spend), float(t.multiplier)) for t in PROGRAMME.tiers] == expected
    assert PROGRAMME.tier_for(Decimal("2999.99")).name == "Ordinary"
    assert PROGRAMME.tier_for(Decimal(3_000)).name == "Silver"
    assert PROGRAMME.tier_for(Decimal(29_999)).name == "Gold"
    assert PROGRAMME.tier_for(Decimal(10**9)).name == "Diamond"


def test_points_round_down_and_refunds_earn_nothing() -> None:
    gold = PROGRAMME.tier_for(Decimal(10_000))
    assert PROGRAMME.points_for(Decimal("99.99"), gold) == 149  # floor(149.985)
    assert PROGRAMME.points_for(Decimal("-20"), gold) == 0
    assert PROGRAMME.points_for(Decimal(0), gold) == 0


def test_tier_comes_from_spend_before_the_purchase_within_the_window() -> None:
    purchases = [
        Purchase("m1", T0, Decimal(3_000)),  # Ordinary: nothing before
        Purchase("m1", T0 + timedelta(days=1), Decimal(100)),  # Silver: 3,000 before
        Purchase("m1", T0 + timedelta(days=366), Decimal(100)),  # window passed: back to Ordinary
    ]
    got = list(accrue(PROGRAMME, purchases))
    assert [(a.tier, a.points) for a in got] == [("Ordinary", 3_000), ("Silver", 120), ("Ordinary", 100)]


def test_accrual_is_per_member_and_order_independent() -> None:
    a = [Purchase("m2", T0 + timedelta(days=d), Decimal(1_000)) for d in range(5)]
    b = [Purchase("m1", T0, Decimal(50_000))]
    forward = list(accrue(PROGRAMME, a + b))
    backward = list(accrue(PROGRAMME, list(reversed(b + a))))
    assert forward == backward
    assert [x.tier for x in forward if x.member_id == "m2"] == ["Ordinary"] * 3 + ["Silver"] * 2


def test_configurable_programme() -> None:
    custom = LoyaltyProgramme(
        programme_id="careplus-club",
        partner="careplus",
        points_per_unit=Decimal(2),
        tiers=(
            Tier(name="Member", min_spend=Decimal(0), multiplier=Decimal(1)),
            Tier(name="VIP", min_spend=Decimal(500), multiplier=Decimal(3)),
        ),
        tier_window_days=30,
        expiry_months=12,
    )
    got = list(accrue(custom, [Purchase("c", T0, Decimal(500)), Purchase("c", T0, Decimal(10))]))
    assert [a.points for a in got] == [1_000, 60]
    assert got[0].expires_at == datetime(2025, 1, 1)


@pytest.mark.parametrize(
    "tiers",
    [
        (Tier(name="A", min_spend=Decimal(10), multiplier=Decimal(1)),),
        (
            Tier(name="A", min_spend=Decimal(0), multiplier=Decimal(1)),
            Tier(name="B", min_spend=Decimal(0), multiplier=Decimal(2)),
        ),
        (
            Tier(name="A", min_spend=Decimal(0), multiplier=Decimal(1)),
            Tier(name="A", min_spend=Decimal(5), multiplier=Decimal(2)),
        ),
    ],
)
def test_inconsistent_tiers_are_refused(tiers: tuple[Tier, ...]) -> None:
    with pytest.raises(ValidationError):
        LoyaltyProgramme(programme_id="x", partner="x", tiers=tiers)


def test_expiry_clamps_month_ends_and_opening_balance_drops_expired() -> None:
    assert add_months(datetime(2024, 1, 31), 1) == datetime(2024, 2, 29)
    assert add_months(datetime(2021, 11, 15), 36) == datetime(2024, 11, 15)
    accruals = list(
        accrue(
            PROGRAMME,
            [
                Purchase("m", datetime(2020, 1, 1), Decimal(100)),
                Purchase("m", datetime(2023, 6, 1), Decimal(50)),
            ],
        )
    )
    assert opening_balances(accruals, at=datetime(2022, 12, 31)) == {"m": 100}
    assert opening_balances(accruals, at=datetime(2023, 6, 1)) == {"m": 50}  # the 2020 lot lapsed


def test_fifo_expiry_spends_oldest_lots_first() -> None:
    lots = [(100, datetime(2024, 1, 1)), (50, datetime(2025, 1, 1))]
    assert expired_points(lots, 30, at=datetime(2024, 6, 1)) == 70
    assert expired_points(lots, 130, at=datetime(2025, 6, 1)) == 20
    with pytest.raises(ProgrammeError):
        expired_points(lots, -1, at=T0)


@given(
    st.lists(st.tuples(st.integers(0, 1_000), st.integers(0, 100)), max_size=20),
    st.integers(0, 5_000),
    st.integers(0, 120),
)
def test_expired_never_exceeds_what_is_left(lots: list[tuple[int, int]], spent: int, day: int) -> None:
    dated = [(points, T0 + timedelta(days=d)) for points, d in lots]
    expired = expired_points(dated, spent, at=T0 + timedelta(days=day))
    total = sum(p for p, _ in lots)
    assert 0 <= expired <= total - min(spent, total)
    assert expired <= sum(p for p, d in dated if d <= T0 + timedelta(days=day))
