"""Per-purpose consented-member counts as the nodes report them: coarsened, and withheld below k.

The analyst's launch form shows them per partner before a job is submitted and refuses where a
partner has no usable consented members for the job's purpose; the node still decides for itself
when the job reaches it. A report replaces the partner's previous counts (a purpose the node no
longer reports is dropped). Counts are aggregates over at least k members, not lineage: no audit
event, as for heartbeats.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import InvalidRequestError
from coordinator.platform.principals import Principal
from coordinator.store.tables import ConsentCountRow
from protocol.node_reports import ConsentCountReport

__all__ = ["list_consent_counts", "record_consent_counts"]


def record_consent_counts(
    session: Session, trail: AuditTrail, *, actor: Principal, partner_id: str, report: ConsentCountReport
) -> list[ConsentCountRow]:
    """Replace ``partner_id``'s counts with ``report``'s."""
    if partner_id != actor.organisation:
        raise InvalidRequestError(f"a node reports its own partner's counts: {actor.organisation}")
    now = trail.clock()
    session.execute(delete(ConsentCountRow).where(ConsentCountRow.partner_id == partner_id))
    rows = [
        ConsentCountRow(
            partner_id=partner_id,
            purpose=count.purpose,
            members=count.members,
            granularity=report.granularity,
            counted_at=report.counted_at,
            reported_at=now,
        )
        for count in report.counts
    ]
    session.add_all(rows)
    session.commit()
    return rows


def list_consent_counts(session: Session, *, purpose: str | None = None) -> list[ConsentCountRow]:
    """Every partner's latest counts (aggregates every role but a node may read), by partner and purpose."""
    query = select(ConsentCountRow).order_by(ConsentCountRow.partner_id, ConsentCountRow.purpose)
    if purpose is not None:
        query = query.where(ConsentCountRow.purpose == purpose)
    return list(session.scalars(query))
