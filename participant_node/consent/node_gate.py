"""The node gate: the one place every use of a partner's member data passes through.

Training data loading, scoring, PSI (every mode, cached sets included) and points interchange all
describe the use they are about to make as a ``MemberDataUse`` and call ``admit``; whatever runs
next only ever sees what the rules below leave. The rules, in the order they apply:

1. purpose: under a policy, the use's purpose must be the policy's (PIPL Art. 6, GDPR
   Art. 5(1)(b)); every member needs valid consent for that purpose at the moment of use;
2. recipient scope: a use whose member-level results go to another partner needs that partner to
   be named by the policy, and each member's consent scope to cover it (PIPL Art. 23);
3. withdrawal and erasure: withdrawals, later grants and erasures recorded in the node's consent
   store count from the moment they were recorded (PIPL Art. 15, 47; GDPR Art. 7(3), 17);
4. cross-border: nothing goes out of the node's legal area unless a policy allows a transfer with
   a mechanism, and then only members with the separate cross-border consent take part (PIPL
   Art. 38-39, GDPR Art. 44-46);
5. retention: rows older than the retention window (the policy's, else the 3-year default) are
   left out, and so are members with no activity inside it (PIPL Art. 19, GDPR Art. 5(1)(e));
6. minimisation: only the columns the use declares it reads, and under a policy only those the
   policy allows, ever leave this module; sensitive columns only for fairness evaluation (PIPL
   Art. 6, 28-29; GDPR Art. 5(1)(c), 9). ``member_id`` stays as the node-local join key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from participant_node.consent.selection import consented_members
from participant_node.data import PartnerData
from participant_node.errors import NodeError
from policies.consent_filter import ConsentSelection
from policies.evaluation import is_cross_border
from policies.jurisdiction import DEFAULT_RETENTION_DAYS, jurisdiction_of_region
from policies.policy import DataUsePolicy
from policies.purpose import Purpose
from policies.retention import apply_retention, retention_cutoff

__all__ = [
    "GateRefusedError",
    "GateRule",
    "GatedData",
    "MemberDataUse",
    "TransferRefusedError",
    "admit",
    "apply_selection",
    "gate_partner_data",
    "select_members",
]

# The date column retention is measured on, per table.
_RETENTION_COLUMN = {"transactions": "timestamp", "campaigns": "end_date"}
_KEY = "member_id"


class GateRule(StrEnum):
    """The gate's rules, as named in refusals and in the tests' entry point × rule matrix."""

    PURPOSE = "purpose"
    RECIPIENT_SCOPE = "recipient_scope"
    WITHDRAWAL_ERASURE = "withdrawal_erasure"
    CROSS_BORDER = "cross_border"
    RETENTION = "retention"
    MINIMISATION = "minimisation"


class GateRefusedError(NodeError):
    """The node refuses the use outright; the message names the rule and never a member."""


class TransferRefusedError(GateRefusedError):
    """The node will not send data (or anything derived from it) to another legal area."""


@dataclass(frozen=True)
class MemberDataUse:
    """One use of member data, as the step about to make it declares it.

    Parameters
    ----------
    purpose, at
        What the data is used for, and the moment of use (consents are checked at it).
    reads
        Columns per table the step reads (``members``, ``transactions``, ``campaigns``). ``None``
        only under a policy: then the policy's columns.
    recipient
        The partner receiving member-level results (PSI, points); None for the node's own use
        (training and scoring, where only DP-noised updates or k-member aggregates leave).
    policy
        The approved policy the use runs under, if the node has one for it.
    node_region, destination_region
        Where the node is and where results go (default destination: the policy's coordinator).
    fairness
        Keep the policy's sensitive columns, for fairness evaluation only, for members with the
        separate sensitive-data consent.
    retention_as_of
        The moment the retention window ends (default ``at``; a job replaying history passes the
        end of the period it reads, never later than ``at``).
    """

    purpose: Purpose
    at: datetime
    reads: Mapping[str, tuple[str, ...]] | None = None
    recipient: str | None = None
    policy: DataUsePolicy | None = None
    node_region: str | None = None
    destination_region: str | None = None
    fairness: bool = False
    retention_as_of: datetime | None = None

    def __post_init__(self) -> None:
        if self.reads is None and self.policy is None:
            raise ValueError("a use of member data without a policy must declare the columns it reads")

    @property
    def retention_days(self) -> int:
        return self.policy.data_retention_days if self.policy is not None else DEFAULT_RETENTION_DAYS

    @property
    def destination(self) -> str | None:
        if self.destination_region is not None:
            return self.destination_region
        return self.policy.coordinator_region if self.policy is not None else None


@dataclass(frozen=True)
class GatedData:
    """A partner's frames after the gate: consented members, retained rows, approved columns."""

    members: pd.DataFrame
    transactions: pd.DataFrame
    campaigns: pd.DataFrame | None
    selection: ConsentSelection
    cross_border: bool
    retention_purged: dict[str, int] = field(default_factory=dict)
    columns_dropped: dict[str, int] = field(default_factory=dict)


def admit(partner: PartnerData, use: MemberDataUse) -> GatedData:
    """Apply every rule of the gate to ``partner`` for ``use``; raise ``GateRefusedError`` if refused."""
    selection, crosses = select_members(partner, use)
    return apply_selection(partner, use, selection, crosses)


def select_members(partner: PartnerData, use: MemberDataUse) -> tuple[ConsentSelection, bool]:
    """Rules 1-4: the members whose consent allows ``use``, and whether the use crosses a border.

    The cheap half of ``admit``: a caller that caches its derived data keys the cache on the
    returned selection's ``snapshot_hash`` and calls ``apply_selection`` only on a miss.
    """
    _refuse_outside_policy(partner, use)
    crosses = _crosses_border(partner, use)
    policy = use.policy
    node_law = jurisdiction_of_region(use.node_region) if use.node_region else None
    laws = (policy.jurisdictions if policy is not None else frozenset()) | ({node_law} if node_law else set())
    extra = {"jurisdictions": frozenset(laws)} if laws else {}
    selection = consented_members(
        partner.path,
        partner.members,
        partner.consents,
        purpose=use.purpose,
        at=use.at,
        recipient=use.recipient,
        cross_border=crosses,
        sensitive=use.fairness,
        granted_since=policy.notice_effective_at if policy is not None else None,
        **extra,
    )
    return selection, crosses


def _refuse_outside_policy(partner: PartnerData, use: MemberDataUse) -> None:
    policy = use.policy
    if policy is None:
        return
    if use.purpose != policy.purpose:
        raise GateRefusedError(
            f"partner {partner.path.name}: {GateRule.PURPOSE}: the use's purpose {use.purpose} is not "
            f"policy {policy.policy_id}'s {policy.purpose} (PIPL Art. 6 / GDPR Art. 5(1)(b))"
        )
    if use.recipient is not None and use.recipient not in policy.partners:
        raise GateRefusedError(
            f"partner {partner.path.name}: {GateRule.RECIPIENT_SCOPE}: policy {policy.policy_id} does not "
            f"name {use.recipient} as a partner (PIPL Art. 23)"
        )


def _crosses_border(partner: PartnerData, use: MemberDataUse) -> bool:
    destination = use.destination
    if use.node_region is None or destination is None:
        return False
    if not is_cross_border(use.node_region, destination):
        return False
    if use.policy is None or not use.policy.cross_border.allowed:
        under = f"policy {use.policy.policy_id}" if use.policy is not None else "no policy"
        raise TransferRefusedError(
            f"partner {partner.path.name} in region {use.node_region} refuses to send to {destination}: "
            f"{GateRule.CROSS_BORDER}: {under} allows no cross-border transfer (PIPL Art. 38-39 / "
            "GDPR Art. 44-46)"
        )
    return True


def apply_selection(
    partner: PartnerData, use: MemberDataUse, selection: ConsentSelection, crosses: bool
) -> GatedData:
    """Rules 5-6 on the selected members: retention, then the column projection."""
    now = use.retention_as_of or use.at
    purged: dict[str, int] = {}
    frames: dict[str, pd.DataFrame | None] = {}
    for table in ("transactions", "campaigns"):
        frame = partner.transactions if table == "transactions" else partner.campaigns
        if frame is None:
            frames[table] = None
            continue
        frame = _only_members(frame, selection.member_ids)
        result = apply_retention(frame, _RETENTION_COLUMN[table], now=now, days=use.retention_days)
        frames[table], purged[table] = result.kept, result.purged
    members = _only_members(partner.members, selection.member_ids)
    active = _active_members(members, frames["transactions"], now, use.retention_days)
    purged["members"] = int((~active).sum())
    if purged["members"]:
        members = members.loc[active]
        kept_ids = pd.Index(members[_KEY].astype("string"))
        frames = {t: None if f is None else _only_members(f, kept_ids) for t, f in frames.items()}
    dropped: dict[str, int] = {}
    projected: dict[str, pd.DataFrame | None] = {}
    for table, frame in {"members": members, **frames}.items():
        projected[table], dropped[table] = (None, 0) if frame is None else _project(frame, table, use)
    gated_members, transactions = projected["members"], projected["transactions"]
    assert gated_members is not None and transactions is not None  # required files of the data contract
    return GatedData(gated_members, transactions, projected["campaigns"], selection, crosses, purged, dropped)


def _active_members(
    members: pd.DataFrame, transactions: pd.DataFrame | None, now: datetime, days: int
) -> pd.Series:
    """Members who joined inside the retention window or have a retained transaction."""
    joined = members["joined_at"].to_numpy(dtype="M8[us]")
    recent = pd.Series(
        np.isnat(joined) | (joined >= np.datetime64(retention_cutoff(now, days), "us")), index=members.index
    )
    if transactions is None or transactions.empty:
        return recent
    # Matched in Arrow: a Python set of every transaction's member id cost about half of a node's
    # data loading (the ids iterated one by one out of their Arrow array).
    buyers = pc.unique(pa.array(transactions[_KEY].astype("string").array))
    bought = pc.is_in(pa.array(members[_KEY].astype("string").array), value_set=buyers)
    return recent | pd.Series(bought.to_numpy(zero_copy_only=False), index=members.index)


def _only_members(frame: pd.DataFrame, member_ids: pd.Index) -> pd.DataFrame:
    ids = pa.array(frame[_KEY].astype("string").array)
    keep = pc.is_in(ids, value_set=pa.array(member_ids.astype("string").array))
    return frame.loc[keep.to_numpy(zero_copy_only=False)]


def _project(frame: pd.DataFrame, table: str, use: MemberDataUse) -> tuple[pd.DataFrame, int]:
    # PIPL Art. 6 / GDPR Art. 5(1)(c): columns outside the use and the policy never leave this function.
    allowed = set(use.reads.get(table, ())) if use.reads is not None else None
    policy = use.policy
    if policy is not None:
        approved = set(policy.columns.get(table, ()))
        if use.fairness:
            approved |= set(policy.sensitive_columns.get(table, ()))
        allowed = approved if allowed is None else allowed & approved
    keep = [c for c in frame.columns if c == _KEY or c in (allowed or set())]
    return frame[keep], len(frame.columns) - len(keep)


def gate_partner_data(
    partner: PartnerData,
    policy: DataUsePolicy,
    *,
    at: datetime,
    node_region: str,
    destination_region: str | None = None,
    recipient: str | None = None,
    fairness: bool = False,
    retention_as_of: datetime | None = None,
) -> GatedData:
    """``admit`` under ``policy`` for the policy's purpose, reading every column the policy allows."""
    use = MemberDataUse(
        purpose=policy.purpose,
        at=at,
        policy=policy,
        node_region=node_region,
        destination_region=destination_region,
        recipient=recipient,
        fairness=fairness,
        retention_as_of=retention_as_of,
    )
    return admit(partner, use)
