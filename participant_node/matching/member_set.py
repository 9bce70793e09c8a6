"""A node's PSI input set: members the node gate admits, normalised and keyed identifiers.

Every PSI set — intersection, cardinality, intersection-sum, a cached epoch set, the points
interchange's link set — comes from ``gated_matching_set`` (or, for a set that is not keyed here,
``consented_member_frame``), so the node gate (``participant_node.consent.node_gate``) applies its
purpose, recipient scope, withdrawal and erasure, cross-border, retention and minimisation rules to
it. Member ids stay in this process: the set maps each PSI item back to its member id for the
node's own use (link tokens, points interchange) and is never serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from participant_node.consent import GatedData, MemberDataUse, admit
from participant_node.data import PartnerData, PartnerReport, is_partner_folder, load_partner
from participant_node.matching.config import MATCHING_PURPOSES
from participant_node.matching.errors import MatchingError
from policies.policy import DataUsePolicy
from policies.purpose import Purpose
from psi.identifiers import IdentifierKind, prepare_identifiers

__all__ = [
    "MatchingSet",
    "build_matching_set",
    "consented_member_frame",
    "gated_matching_set",
    "matching_set_from_frames",
]

_VALUE_COLUMN = "points_balance"


@dataclass(frozen=True)
class MatchingSet:
    """PSI items with their member ids (node-local) and the counts the audit log may see."""

    items: list[bytes]
    member_ids: list[str]
    consented: int
    excluded_by_consent: int
    unusable_identifiers: int
    duplicates: int
    consent_snapshot_hash: str
    values: list[int] | None = None  # points_balance per item, for the intersection-sum mode
    excluded_by_retention: int = 0


def consented_member_frame(
    partner: PartnerData,
    *,
    purpose: Purpose,
    recipient: str,
    at: datetime,
    columns: tuple[str, ...],
    policy: DataUsePolicy | None = None,
    node_region: str | None = None,
    destination_region: str | None = None,
) -> GatedData:
    """The node gate for a matching use: members of ``partner`` that may be matched with ``recipient``.

    ``columns`` are the members columns the matching reads (the identifier, optionally a value
    column); the gated members frame holds ``member_id`` and those of them the policy allows.
    """
    if purpose not in MATCHING_PURPOSES:
        raise MatchingError(
            f"purpose {purpose} does not allow matching; use one of {sorted(MATCHING_PURPOSES)}"
        )
    use = MemberDataUse(
        purpose=purpose,
        at=at,
        reads={"members": ("member_id", *columns)},
        recipient=recipient,
        policy=policy,
        node_region=node_region,
        destination_region=destination_region,
    )
    return admit(partner, use)


def gated_matching_set(
    partner: PartnerData,
    *,
    purpose: Purpose,
    recipient: str,
    at: datetime,
    id_column: str,
    secret: bytes,
    default_region: str = "US",
    policy: DataUsePolicy | None = None,
    node_region: str | None = None,
    destination_region: str | None = None,
) -> MatchingSet:
    """The PSI set of ``partner`` for ``purpose`` towards ``recipient``: gated, then keyed.

    The one call for every PSI use, points interchange included
    (``purpose=Purpose.POINTS_INTERCHANGE, recipient=<the other brand>``).
    """
    if id_column not in partner.members.columns:
        raise MatchingError(f"members file of {partner.path.name}: no column {id_column!r} to match on")
    gated = consented_member_frame(
        partner,
        purpose=purpose,
        recipient=recipient,
        at=at,
        columns=(id_column, _VALUE_COLUMN),
        policy=policy,
        node_region=node_region,
        destination_region=destination_region,
    )
    chosen = gated.members
    if id_column not in chosen.columns:
        assert policy is not None  # without a policy the gate keeps every column the use reads
        raise MatchingError(
            f"partner {partner.path.name}: policy {policy.policy_id} does not allow members.{id_column} "
            "to be used for matching (data minimisation)"
        )
    prepared = prepare_identifiers(
        chosen[id_column].tolist(), IdentifierKind(id_column), secret=secret, default_region=default_region
    )
    ids = chosen["member_id"].astype(str).tolist()
    values = None
    if _VALUE_COLUMN in chosen.columns:
        points = pd.to_numeric(chosen[_VALUE_COLUMN], errors="coerce").fillna(0).clip(lower=0).round()
        values = [int(points.iloc[row]) for row in prepared.rows]
    return MatchingSet(
        items=prepared.items,
        member_ids=[ids[row] for row in prepared.rows],
        consented=len(chosen),
        excluded_by_consent=int(gated.selection.excluded),
        unusable_identifiers=prepared.malformed + prepared.empty,
        duplicates=prepared.duplicates,
        consent_snapshot_hash=gated.selection.snapshot_hash,
        values=values,
        excluded_by_retention=gated.retention_purged.get("members", 0),
    )


def matching_set_from_frames(
    partner_dir: Path,
    members: pd.DataFrame,
    consents: pd.DataFrame,
    *,
    purpose: Purpose,
    recipient: str,
    at: datetime,
    id_column: str,
    secret: bytes,
    default_region: str = "US",
    transactions: pd.DataFrame | None = None,
) -> MatchingSet:
    """``gated_matching_set`` over given members and consents frames of the partner at ``partner_dir``.

    The retention rule needs the members' activity: ``transactions``, else the partner folder's
    own; without either, a member counts as active only while it joined inside the window. A
    caller that holds the whole ``PartnerData`` calls ``gated_matching_set`` instead.
    """
    if transactions is None:
        transactions = (
            load_partner(partner_dir).transactions
            if is_partner_folder(partner_dir)
            else pd.DataFrame(
                {"member_id": pd.Series(dtype="string"), "timestamp": pd.Series(dtype="M8[us]")}
            )
        )
    partner = PartnerData(
        path=partner_dir,
        members=members,
        transactions=transactions,
        consents=consents,
        campaigns=None,
        report=PartnerReport(partner=partner_dir.name),
    )
    return gated_matching_set(
        partner,
        purpose=purpose,
        recipient=recipient,
        at=at,
        id_column=id_column,
        secret=secret,
        default_region=default_region,
    )


def build_matching_set(
    partner_dir: Path,
    *,
    purpose: Purpose,
    recipient: str,
    at: datetime,
    id_column: str,
    secret: bytes,
    default_region: str = "US",
    policy: DataUsePolicy | None = None,
) -> MatchingSet:
    """Load the partner folder and build its gated matching set (see ``gated_matching_set``)."""
    return gated_matching_set(
        load_partner(partner_dir),
        purpose=purpose,
        recipient=recipient,
        at=at,
        id_column=id_column,
        secret=secret,
        default_region=default_region,
        policy=policy,
    )
