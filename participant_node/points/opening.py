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
from decimal import Decimal, InvalidOperation

import pandas as pd

from participant_node.points.interchange_rows import ISSUANCE_ACCOUNT, member_account
from participant_node.points.ledger import Ledger
from participant_node.points.ledger_rules import AccountFlags, Result, Transfer
from policies.loyalty_programme import LoyaltyProgramme, Purchase, accrue, opening_balances

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


def _purchases(transactions: pd.DataFrame, at: datetime) -> tuple[list[Purchase], int]:
    frame = transactions[["member_id", "timestamp", "amount"]]
    purchases, unusable = [], 0
    for member, when, amount in frame.itertuples(index=False, name=None):
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            unusable += 1
            continue
        if pd.isna(when) or not value.is_finite():
            unusable += 1
            continue
        moment = pd.Timestamp(when).to_pydatetime().replace(tzinfo=None)
        if moment <= at:
            purchases.append(Purchase(str(member), moment, value))
    return purchases, unusable


def opening_from_transactions(
    programme: LoyaltyProgramme, transactions: pd.DataFrame, *, at: datetime
) -> tuple[dict[str, int], Counter[str], int]:
    """Unexpired points per member at ``at``, the tier of each member's last purchase, unusable rows."""
    purchases, unusable = _purchases(transactions, at.replace(tzinfo=None))
    accruals = list(accrue(programme, purchases))
    last_tier: dict[str, str] = {a.member_id: a.tier for a in accruals}
    return opening_balances(accruals, at=at.replace(tzinfo=None)), Counter(last_tier.values()), unusable


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
