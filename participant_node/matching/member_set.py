"""A node's PSI input set: consented members only, normalised and keyed identifiers.

Member ids stay in this process: the set object maps each PSI item back to its member id for the
node's own use (link tokens, points interchange) and is never serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from participant_node.consent import consented_members
from participant_node.data import load_partner
from participant_node.matching.config import MATCHING_PURPOSES
from participant_node.matching.errors import MatchingError
from policies.purpose import Purpose
from psi.identifiers import IdentifierKind, prepare_identifiers

__all__ = ["MatchingSet", "build_matching_set", "matching_set_from_frames"]


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
) -> MatchingSet:
    """Consent-filter ``members`` for ``purpose`` towards ``recipient`` and key their identifiers."""
    if purpose not in MATCHING_PURPOSES:
        raise MatchingError(
            f"purpose {purpose} does not allow matching; use one of {sorted(MATCHING_PURPOSES)}"
        )
    if id_column not in members.columns:
        raise MatchingError(f"members file of {partner_dir.name}: no column {id_column!r} to match on")
    selection = consented_members(partner_dir, members, consents, purpose=purpose, at=at, recipient=recipient)
    chosen = members[members["member_id"].isin(selection.member_ids)]
    prepared = prepare_identifiers(
        chosen[id_column].tolist(), IdentifierKind(id_column), secret=secret, default_region=default_region
    )
    ids = chosen["member_id"].astype(str).tolist()
    values = None
    if "points_balance" in chosen.columns:
        points = pd.to_numeric(chosen["points_balance"], errors="coerce").fillna(0).clip(lower=0).round()
        values = [int(points.iloc[row]) for row in prepared.rows]
    return MatchingSet(
        items=prepared.items,
        member_ids=[ids[row] for row in prepared.rows],
        consented=len(chosen),
        excluded_by_consent=int(selection.excluded),
        unusable_identifiers=prepared.malformed + prepared.empty,
        duplicates=prepared.duplicates,
        consent_snapshot_hash=selection.snapshot_hash,
        values=values,
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
) -> MatchingSet:
    """Load the partner folder and build its consented matching set (see ``matching_set_from_frames``)."""
    data = load_partner(partner_dir)
    return matching_set_from_frames(
        partner_dir,
        data.members,
        data.consents,
        purpose=purpose,
        recipient=recipient,
        at=at,
        id_column=id_column,
        secret=secret,
        default_region=default_region,
    )
