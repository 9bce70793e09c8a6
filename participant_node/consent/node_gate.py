"""The node's gate in front of every use of its data under an approved policy.

``gate_partner_data`` composes the node-side rules of issue 5 item 4 around a partner's frames,
so whatever runs next (PSI, a training round) only ever sees what the policy and the members
allow:

1. cross-border: a node refuses to send anything out of its legal area unless the policy allows
   a transfer with a mechanism (PIPL Art. 38-39, GDPR Art. 44-46), and then only members with the
   separate cross-border consent take part;
2. consent: valid, unexpired, unwithdrawn consent for the purpose and recipient, given after the
   current notice, guardians for minors, erased members never (``consented_members``);
3. retention: rows older than the policy's retention window are left out (PIPL 19, GDPR 5(1)(e));
4. minimisation: only the policy's columns are kept; sensitive columns only when asked for
   fairness evaluation (PIPL 6, 28-29; GDPR 5(1)(c), 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from participant_node.consent.selection import consented_members
from participant_node.data import PartnerData
from participant_node.errors import NodeError
from policies.consent_filter import ConsentSelection
from policies.evaluation import is_cross_border
from policies.jurisdiction import jurisdiction_of_region
from policies.policy import DataUsePolicy
from policies.retention import apply_retention

__all__ = ["GatedData", "TransferRefusedError", "gate_partner_data"]

# The date column retention is measured on, per table.
_RETENTION_COLUMN = {"transactions": "timestamp", "campaigns": "end_date"}


class TransferRefusedError(NodeError):
    """The node will not send data (or anything derived from it) to another legal area."""


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
    """Apply the policy and the members' consents to ``partner`` before a use at ``at``.

    Parameters
    ----------
    partner
        The node's validated frames (``participant_node.data.load_partner``).
    policy
        The approved policy the use runs under (``require_approved(...).policy``).
    at
        Moment of use: consent validity is checked at this moment.
    node_region, destination_region
        Where the node is and where results go (default: the policy's coordinator region).
    recipient
        Partner receiving member-level results (PSI); None when only DP-noised updates leave.
    fairness
        Keep the policy's sensitive columns, for fairness evaluation only, for members with the
        separate sensitive-data consent.
    retention_as_of
        The "now" of the retention window (default ``at``); a historical replay passes its as-of date.
    """
    destination = destination_region or policy.coordinator_region
    crosses = is_cross_border(node_region, destination)
    if crosses and not policy.cross_border.allowed:
        raise TransferRefusedError(
            f"partner {partner.path.name} in region {node_region} refuses to send to {destination}: "
            f"policy {policy.policy_id} does not allow cross-border transfer "
            "(PIPL Art. 38-39 / GDPR Art. 44-46)"
        )
    node_law = jurisdiction_of_region(node_region)
    selection = consented_members(
        partner.path,
        partner.members,
        partner.consents,
        purpose=policy.purpose,
        at=at,
        recipient=recipient,
        cross_border=crosses,
        sensitive=fairness,
        jurisdictions=policy.jurisdictions | ({node_law} if node_law else set()),
        granted_since=policy.notice_effective_at,
    )
    return _gate_frames(partner, policy, selection, crosses, retention_as_of or at, fairness)


def _gate_frames(
    partner: PartnerData,
    policy: DataUsePolicy,
    selection: ConsentSelection,
    crosses: bool,
    retention_now: datetime,
    fairness: bool,
) -> GatedData:
    frames = {
        "members": partner.members,
        "transactions": partner.transactions,
        "campaigns": partner.campaigns,
    }
    purged: dict[str, int] = {}
    dropped: dict[str, int] = {}
    kept: dict[str, pd.DataFrame | None] = {}
    for table, frame in frames.items():
        if frame is None:
            kept[table] = None
            continue
        frame = _only_members(frame, selection)
        if table in _RETENTION_COLUMN:
            result = apply_retention(
                frame, _RETENTION_COLUMN[table], now=retention_now, days=policy.data_retention_days
            )
            frame, purged[table] = result.kept, result.purged
        kept[table], dropped[table] = _project(frame, policy, table, fairness)
    members, transactions = kept["members"], kept["transactions"]
    assert members is not None and transactions is not None  # required files of the data contract
    return GatedData(members, transactions, kept["campaigns"], selection, crosses, purged, dropped)


def _only_members(frame: pd.DataFrame, selection: ConsentSelection) -> pd.DataFrame:
    ids = pa.array(frame["member_id"].astype("string").array)
    keep = pc.is_in(ids, value_set=pa.array(selection.member_ids.astype("string").array))
    return frame.loc[keep.to_numpy(zero_copy_only=False)]


def _project(
    frame: pd.DataFrame, policy: DataUsePolicy, table: str, fairness: bool
) -> tuple[pd.DataFrame, int]:
    # PIPL Art. 6 / GDPR Art. 5(1)(c): columns outside the approved policy never leave this function.
    allowed = list(policy.columns.get(table, ()))
    if fairness:
        allowed += list(policy.sensitive_columns.get(table, ()))
    keep = [c for c in frame.columns if c in allowed]
    return frame[keep], len(frame.columns) - len(keep)
