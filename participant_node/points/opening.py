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
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd

from participant_node.points.interchange_rows import ISSUANCE_ACCOUNT, member_account
from participant_node.points.ledger import Ledger
from participant_node.points.ledger_rules import AccountFlags, Result, Transfer
from policies.loyalty_programme import LoyaltyProgramme

__all__ = ["OpeningReport", "issue_opening_balances", "opening_from_transactions"]


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


def opening_from_transactions(
    programme: LoyaltyProgramme, transactions: pd.DataFrame, *, at: datetime
) -> tuple[dict[str, int], Counter[str], int]:
    """Unexpired points per member at ``at``, the tier of each member's last purchase, unusable rows.

    The vectorised form of ``policies.loyalty_programme.accrue`` + ``opening_balances`` (the tests
    hold the two equal): per purchase, the member's positive spend in the trailing window before
    it (same-moment purchases earlier in the input count, as there) picks the tier; points are
    floor(cents × rate × multiplier / 100) in exact integer arithmetic.
    """
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
        return {}, Counter(), unusable
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
    per_member = pd.Series(points * live).groupby(frame["member"].to_numpy()).sum()
    last_tier = pd.Series(tier).groupby(frame["member"].to_numpy()).last()
    names = [t.name for t in programme.tiers]
    balances = {str(m): int(p) for m, p in per_member.items() if p > 0}
    return balances, Counter(names[i] for i in last_tier.to_numpy()), unusable


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
    outcomes = ledger.submit(list(_opening_transfers(balances, at)))
    issued = sum(o.ok and not o.replay for o in outcomes)
    again = sum(o.ok and o.replay for o in outcomes)
    refused = sum(o.result is not Result.OK for o in outcomes)
    return OpeningReport(len(balances), sum(balances.values()), issued, again, refused, dict(tiers), unusable)
