"""A partner's opening ledger: its programme's rules applied to its transactions (``loyalfed points accrue``).

Each member's unexpired points at the opening moment are issued to their account by one transfer
from the issuance account, with an id derived from the member and the moment, so running the
accrual again for the same moment changes nothing (the ledger answers with the first outcome), and
a different result for the same moment is refused rather than silently double-issued.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd

from participant_node.points.interchange_rows import ISSUANCE_ACCOUNT, member_account
from participant_node.points.ledger import Ledger
from participant_node.points.ledger_rules import AccountFlags, Result, Transfer
from participant_node.points.point_lots import Slice, add_lots
from policies.loyalty_programme import LoyaltyProgramme

__all__ = ["OpeningReport", "issue_opening_balances", "opening_from_transactions", "opening_lots"]


@dataclass(frozen=True)
class OpeningReport:
    members: int
    points: int
    issued: int
    already_issued: int
    refused: int
    tiers: dict[str, int]
    unusable_rows: int

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _cents(values: pd.Series) -> np.ndarray:
    """Amounts as integer cents, exactly (amounts in the data contract carry at most 2 decimals)."""
    return np.round(pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64") * 100).astype("int64")


def _ratio(value: Decimal) -> tuple[int, int]:
    fraction = Fraction(value)
    return fraction.numerator, fraction.denominator


@dataclass(frozen=True)
class _Accruals:
    """Per purchase (sorted by member and time): member, points still unexpired at the moment, expiry."""

    members: np.ndarray
    live_points: np.ndarray
    expires: pd.Series
    tier: np.ndarray
    unusable: int


def _accruals(programme: LoyaltyProgramme, transactions: pd.DataFrame, at: datetime) -> _Accruals | None:
    at = at.replace(tzinfo=None)
    frame = pd.DataFrame(
        {
            "member": transactions["member_id"].astype("string"),
            "at": pd.to_datetime(transactions["timestamp"], errors="coerce").dt.tz_localize(None),
            "cents": _cents(transactions["amount"]),
        }
    )
    usable = frame["at"].notna() & frame["member"].notna() & (np.abs(frame["cents"]) < 10**15)
    unusable = int((~usable).sum())
    frame = frame[usable & (frame["at"] <= pd.Timestamp(at))]
    frame = frame.sort_values(["member", "at"], kind="stable").reset_index(drop=True)
    if frame.empty:
        return _Accruals(np.array([]), np.array([], dtype="int64"), pd.Series([]), np.array([]), unusable)
    codes = frame["member"].factorize()[0].astype("int64")
    seconds = frame["at"].to_numpy(dtype="datetime64[s]").astype("int64")
    key = (codes << 40) + (seconds - seconds.min())
    start = np.searchsorted(key, key - programme.tier_window_days * 86_400, side="right")
    positive = np.concatenate([[0], np.cumsum(np.maximum(frame["cents"].to_numpy(), 0))])
    before = positive[np.arange(len(frame))] - positive[start]
    thresholds = np.array([int(t.min_spend * 100) for t in programme.tiers], dtype="int64")
    tier = np.searchsorted(thresholds, before, side="right") - 1
    rate_n, rate_d = _ratio(programme.points_per_unit)
    ratios = [_ratio(t.multiplier) for t in programme.tiers]
    numerators = np.array([rate_n * n for n, _ in ratios], dtype=object)[tier]
    denominators = np.array([100 * rate_d * d for _, d in ratios], dtype=object)[tier]
    cents = frame["cents"].to_numpy().astype(object)
    points = np.where(frame["cents"].to_numpy() > 0, cents * numerators // denominators, 0).astype("int64")
    expires = frame["at"] + pd.DateOffset(months=programme.expiry_months)
    live = (expires > pd.Timestamp(at)).to_numpy()
    return _Accruals(frame["member"].to_numpy(), points * live, expires, tier, unusable)


def opening_from_transactions(
    programme: LoyaltyProgramme, transactions: pd.DataFrame, *, at: datetime
) -> tuple[dict[str, int], Counter[str], int]:
    """Unexpired points per member at ``at``, the tier of each member's last purchase, unusable rows.

    The vectorised form of ``policies.loyalty_programme.accrue`` + ``opening_balances`` (the tests
    hold the two equal): per purchase, the member's positive spend in the trailing window before
    it (same-moment purchases earlier in the input count, as there) picks the tier; points are
    floor(cents × rate × multiplier / 100) in exact integer arithmetic.
    """
    acc = _accruals(programme, transactions, at)
    if acc is None or len(acc.members) == 0:
        return {}, Counter(), acc.unusable if acc else 0
    per_member = pd.Series(acc.live_points).groupby(acc.members).sum()
    last_tier = pd.Series(acc.tier).groupby(acc.members).last()
    names = [t.name for t in programme.tiers]
    balances = {str(m): int(p) for m, p in per_member.items() if p > 0}
    return balances, Counter(names[i] for i in last_tier.to_numpy()), acc.unusable


def opening_lots(
    programme: LoyaltyProgramme, transactions: pd.DataFrame, *, at: datetime
) -> dict[str, list[Slice]]:
    """Each member's unexpired points at ``at`` by expiry moment (the lots of ``point_lots``)."""
    acc = _accruals(programme, transactions, at)
    if acc is None or len(acc.members) == 0:
        return {}
    expires_us = acc.expires.dt.tz_localize(UTC).astype("int64").to_numpy() // 1_000
    sums = pd.Series(acc.live_points).groupby([acc.members, expires_us]).sum()
    lots: dict[str, list[Slice]] = {}
    for (member, expires_at_us), points in sums.items():
        if points > 0:
            lots.setdefault(str(member), []).append(Slice(int(points), int(expires_at_us)))
    return lots


def _opening_transfers(balances: dict[str, int], at: datetime) -> Iterator[Transfer]:
    stamp = at.strftime("%Y%m%dT%H%M%S")
    for member, points in sorted(balances.items()):
        # The id must not carry the member id (ids reach the audit log): a keyed-free hash suffices,
        # as the id never leaves this node's ledger.
        digest = hashlib.sha256(f"{member}\x00{stamp}".encode()).hexdigest()[:32]
        yield Transfer(
            f"opening-{stamp}-{digest}", ISSUANCE_ACCOUNT, member_account(member), points, code="opening"
        )


def issue_opening_balances(
    ledger: Ledger, programme: LoyaltyProgramme, transactions: pd.DataFrame, *, at: datetime
) -> OpeningReport:
    """Accrue ``transactions`` under ``programme`` and issue each member's balance at ``at``."""
    balances, tiers, unusable = opening_from_transactions(programme, transactions, at=at)
    balances = {m: p for m, p in balances.items() if p > 0}
    flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ledger.open_accounts((member_account(m), "member", None, flags) for m in balances)
    lots = opening_lots(programme, transactions, at=at)
    with ledger.transaction() as tx:
        outcomes = tx.apply(list(_opening_transfers(balances, at)))
        for member, outcome in zip(sorted(balances), outcomes, strict=True):
            if outcome.ok and not outcome.replay:  # points issued now carry their expiry
                add_lots(tx.conn, member_account(member), lots.get(member, []))
    issued = sum(o.ok and not o.replay for o in outcomes)
    again = sum(o.ok and o.replay for o in outcomes)
    refused = sum(o.result is not Result.OK for o in outcomes)
    return OpeningReport(len(balances), sum(balances.values()), issued, again, refused, dict(tiers), unusable)
