"""The member tables the `loyalfed psi …` commands match: a partner's members the node gate admits.

A PSI command never reads a bare member list: it takes a partner folder (members, transactions,
consents; or that folder's members file) and matches only the members whose consent for the
matching purpose covers the other party, unwithdrawn and unerased, active inside the retention
window — the node gate's rules (``participant_node.consent.node_gate``), the same as the node's
PSI service and points interchange apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loyalfed.cli.psi_files import missing_file

__all__ = ["GatedMemberTable", "gated_member_table", "moment_of_use", "partner_folder"]


@dataclass(frozen=True)
class GatedMemberTable:
    """The admitted members (``member_id`` and the columns asked for) and the counts left out."""

    frame: Any
    partner_id: str
    excluded_by_consent: int
    excluded_by_retention: int

    def report(self) -> dict[str, int]:
        return {
            "matched_over": len(self.frame),
            "excluded_by_consent": self.excluded_by_consent,
            "excluded_by_retention": self.excluded_by_retention,
        }


def partner_folder(path: Path) -> Path:
    """The partner folder ``path`` names (the folder itself, or the folder of its members file)."""
    from participant_node.data import is_partner_folder

    if not path.exists():
        raise missing_file(path)
    folder = path if path.is_dir() else path.parent
    if not is_partner_folder(folder):
        raise ValueError(
            f"{path}: PSI matches a partner's consented members only: give a partner folder "
            "(members, transactions and consents files) or its members file"
        )
    return folder


def moment_of_use(at: str | None) -> datetime:
    """``--at`` (ISO date or time, UTC) or now: when the members' consents are checked."""
    if at is None:
        return datetime.now(UTC).replace(tzinfo=None)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ValueError(f"--at must be an ISO 8601 date or time, got {at!r}") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def gated_member_table(
    path: Path, *, purpose: str, recipient: str, at: datetime, columns: tuple[str, ...]
) -> GatedMemberTable:
    """Load the partner at ``path`` and keep the members the node gate admits for matching."""
    from participant_node.data import load_partner
    from participant_node.matching import consented_member_frame
    from policies.purpose import parse_purpose

    folder = partner_folder(path)
    partner = load_partner(folder)
    missing = [c for c in columns if c not in partner.members.columns]
    if missing:
        names = ", ".join(map(str, partner.members.columns))
        raise ValueError(f"{folder}: the members file has no column {missing[0]!r} (columns: {names})")
    gated = consented_member_frame(
        partner, purpose=parse_purpose(purpose), recipient=recipient, at=at, columns=columns
    )
    frame = gated.members.reset_index(drop=True)
    for column in columns:
        if frame[column].dtype == "string" or frame[column].dtype == object:
            frame[column] = frame[column].astype("string").fillna("").astype(object)
    return GatedMemberTable(
        frame=frame,
        partner_id=folder.name,
        excluded_by_consent=int(gated.selection.excluded),
        excluded_by_retention=gated.retention_purged.get("members", 0),
    )


def require_matching_policy(registry: Path, policy: str, *, purpose: str, partners: tuple[str, str]) -> str:
    """The hash of ``policy`` if both partners approved its current version for ``purpose``.

    Raises ``PolicyNotApprovedError`` naming what is missing (no registry, not approved, another
    purpose, a partner outside it); called before any member file is read.
    """
    from coordinator.approvals import PolicyNotApprovedError, PolicyRegistry, require_approved

    if not registry.is_file():
        raise PolicyNotApprovedError(f"no policy registry at {registry}: --policy {policy} cannot be checked")
    book = PolicyRegistry.at_path(registry)
    try:
        approved = require_approved(book, policy, partners=partners)
    finally:
        book.close()
    if approved.policy.purpose.value != purpose:
        raise PolicyNotApprovedError(
            f"policy {approved.policy_id} is for {approved.policy.purpose.value}, not {purpose}"
        )
    return approved.content_hash
