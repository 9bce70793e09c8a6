"""A partner's loyalty programme: tiers, earning multipliers, points per purchase, expiry (pure rules).

A member's tier at a purchase is decided by their spend over the trailing window before it (12
months by default): Ordinary from 0, Silver from 3,000, Gold from 10,000, Diamond from 30,000 in the
programme's currency, earning 1.0 / 1.2 / 1.5 / 2.0 times the base rate. Every threshold, multiplier,
the base rate, the window and the expiry are per programme. Points are whole numbers, rounded down
(a programme never credits a fraction it cannot redeem); refunds and zero amounts earn nothing.
Points expire a fixed number of months after they were earned (36 by default) and are spent oldest
first (FIFO), the usual reading of programme terms such as "points expire 36 months after the
month they were earned".
"""

from __future__ import annotations

import calendar
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.errors import PolicyError

__all__ = [
    "DEFAULT_TIERS",
    "Accrual",
    "LoyaltyProgramme",
    "ProgrammeError",
    "Purchase",
    "Tier",
    "accrue",
    "add_months",
    "expired_points",
    "opening_balances",
]


class ProgrammeError(PolicyError):
    """Programme rules are inconsistent or a purchase cannot be accrued."""


class Tier(BaseModel):
    """One tier: reached at ``min_spend`` trailing spend, earning ``multiplier`` × the base rate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    min_spend: Decimal = Field(ge=0)
    multiplier: Decimal = Field(gt=0, le=100)


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(name="Ordinary", min_spend=Decimal(0), multiplier=Decimal("1.0")),
    Tier(name="Silver", min_spend=Decimal(3_000), multiplier=Decimal("1.2")),
    Tier(name="Gold", min_spend=Decimal(10_000), multiplier=Decimal("1.5")),
    Tier(name="Diamond", min_spend=Decimal(30_000), multiplier=Decimal("2.0")),
)


class LoyaltyProgramme(BaseModel):
    """The earning and expiry rules of one partner's programme."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    programme_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    partner: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    points_per_unit: Decimal = Field(default=Decimal(1), gt=0, le=1000)
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    tier_window_days: int = Field(default=365, ge=1, le=3660)
    expiry_months: int = Field(default=36, ge=1, le=600)

    @model_validator(mode="after")
    def _ordered_tiers(self) -> LoyaltyProgramme:
        if not self.tiers or self.tiers[0].min_spend != 0:
            raise ValueError("the first tier must start at a spend of 0 (every member has a tier)")
        spends = [t.min_spend for t in self.tiers]
        if any(b <= a for a, b in pairwise(spends)):
            raise ValueError("tier thresholds must strictly increase")
        if len({t.name for t in self.tiers}) != len(self.tiers):
            raise ValueError("tier names must be unique")
        return self

    def tier_for(self, trailing_spend: Decimal) -> Tier:
        """The highest tier whose threshold the trailing spend reaches."""
        reached = self.tiers[0]
        for tier in self.tiers:
            if trailing_spend >= tier.min_spend:
                reached = tier
        return reached

    def points_for(self, amount: Decimal, tier: Tier) -> int:
        """Points one purchase earns at ``tier``: floor(amount × base rate × multiplier), ≥ 0."""
        if amount <= 0:
            return 0
        earned = (amount * self.points_per_unit * tier.multiplier).to_integral_value(rounding=ROUND_FLOOR)
        return int(earned)

    def expiry_of(self, earned_at: datetime) -> datetime:
        """When points earned at ``earned_at`` expire."""
        return add_months(earned_at, self.expiry_months)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, the day clamped to the target month (31 Jan + 1 → 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class Purchase:
    """One transaction of a member, in the programme's currency."""

    member_id: str
    at: datetime
    amount: Decimal


@dataclass(frozen=True)
class Accrual:
    """The points one purchase earned, the tier that applied, and when they expire."""

    member_id: str
    at: datetime
    amount: Decimal
    tier: str
    points: int
    expires_at: datetime


def accrue(programme: LoyaltyProgramme, purchases: Iterable[Purchase]) -> Iterator[Accrual]:
    """Points for every purchase, in member then time order.

    The tier of a purchase comes from the member's spend in the window *before* it (the purchase
    itself counts towards later ones), so a member moves up from the purchase after the one that
    crossed a threshold. Purchases of one member at the same moment count in input order.
    """
    window = timedelta(days=programme.tier_window_days)
    ordered = sorted(enumerate(purchases), key=lambda item: (item[1].member_id, item[1].at, item[0]))
    member: str | None = None
    recent: deque[Purchase] = deque()
    spend = Decimal(0)
    for _, purchase in ordered:
        if purchase.member_id != member:
            member, recent, spend = purchase.member_id, deque(), Decimal(0)
        while recent and recent[0].at <= purchase.at - window:
            spend -= max(recent.popleft().amount, Decimal(0))
        tier = programme.tier_for(spend)
        yield Accrual(
            member_id=purchase.member_id,
            at=purchase.at,
            amount=purchase.amount,
            tier=tier.name,
            points=programme.points_for(purchase.amount, tier),
            expires_at=programme.expiry_of(purchase.at),
        )
        recent.append(purchase)
        spend += max(purchase.amount, Decimal(0))


def opening_balances(accruals: Iterable[Accrual], *, at: datetime) -> dict[str, int]:
    """Each member's unexpired points at ``at`` (accruals after ``at`` are not yet earned)."""
    balances: dict[str, int] = {}
    for accrual in accruals:
        if accrual.at <= at < accrual.expires_at and accrual.points > 0:
            balances[accrual.member_id] = balances.get(accrual.member_id, 0) + accrual.points
    return balances


def expired_points(lots: Sequence[tuple[int, datetime]], spent: int, *, at: datetime) -> int:
    """Points of ``lots`` (points, expires_at) expired by ``at`` after ``spent`` points were used FIFO.

    Spending consumes the lots that expire first, so only what is left of a lot at its expiry lapses.
    """
    if spent < 0 or any(points < 0 for points, _ in lots):
        raise ProgrammeError("lots and spent points must not be negative")
    left, expired = spent, 0
    for points, expires_at in sorted(lots, key=lambda lot: lot[1]):
        used = min(points, left)
        left -= used
        if expires_at <= at:
            expired += points - used
    return expired
