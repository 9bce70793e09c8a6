"""Data-subject requests (erasure, access) as the nodes report them: dates and status, no member.

The node serves the request (only it holds member data) and reports each one's random id, kind,
received time, deadline, status and completion time (``protocol.node_reports``). The coordinator
keeps the newest status of each, so a data officer sees their partner's open requests against
their deadlines and an auditor sees every erasure and when it was completed. A request that is new
here, or whose status changed, appends an audit event in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import InvalidRequestError
from coordinator.platform.principals import ADMIN_ORGANISATION, Principal
from coordinator.store.tables import SubjectRequestRow
from protocol.node_reports import SubjectRequestBatch, SubjectRequestKind, SubjectRequestReport

__all__ = ["SubjectRequestView", "list_subject_requests", "record_subject_requests"]


@dataclass(frozen=True)
class SubjectRequestView:
    """A stored request with what a reader needs: is it overdue now, or was it completed late."""

    row: SubjectRequestRow
    overdue: bool


def _changed(row: SubjectRequestRow, report: SubjectRequestReport) -> bool:
    return (row.status, row.completed_at, row.deadline) != (
        report.status.value,
        report.completed_at,
        report.deadline,
    )


def record_subject_requests(
    session: Session, trail: AuditTrail, *, actor: Principal, partner_id: str, batch: SubjectRequestBatch
) -> int:
    """Store ``partner_id``'s node's requests (newest status wins); returns how many were new or changed."""
    if partner_id != actor.organisation:
        raise InvalidRequestError(f"a node reports its own partner's requests: {actor.organisation}")
    ids = [r.request_id for r in batch.requests]
    if len(set(ids)) != len(ids):
        raise InvalidRequestError("each request_id appears once in a report")
    known = {
        row.request_id: row
        for row in session.scalars(
            select(SubjectRequestRow).where(
                SubjectRequestRow.partner_id == partner_id, SubjectRequestRow.request_id.in_(ids)
            )
        )
    }
    now, changed = trail.clock(), []
    for report in batch.requests:
        row = known.get(report.request_id)
        if row is not None and not _changed(row, report):
            continue
        if row is None:
            row = SubjectRequestRow(
                partner_id=partner_id, request_id=report.request_id, kind=report.kind.value
            )
            session.add(row)
        row.received_at, row.deadline = report.received_at, report.deadline
        row.status, row.completed_at, row.reported_at = report.status.value, report.completed_at, now
        changed.append(report)
    session.commit()
    # After the commit: the log never tells of a change the store lacks. The random request id
    # stays out of the log (its hex digits would read as an identifier to the log's own guard).
    for report in changed:
        done = report.completed_at
        on_time = {} if done is None else {"completion": "on_time" if done <= report.deadline else "late"}
        trail.record(
            EventType.DSR_REPORTED,
            actor,
            partner=partner_id,
            details={"kind": report.kind.value, "status": report.status.value, **on_time},
        )
    return len(changed)


def list_subject_requests(
    session: Session,
    *,
    viewer: Principal,
    now: datetime,
    kind: SubjectRequestKind | None = None,
    limit: int = 1000,
) -> list[SubjectRequestView]:
    """Requests the viewer may see (a partner's people: their partner's; the federation: all),
    earliest deadline first."""
    query = select(SubjectRequestRow).order_by(SubjectRequestRow.deadline, SubjectRequestRow.id).limit(limit)
    if viewer.organisation != ADMIN_ORGANISATION:
        query = query.where(SubjectRequestRow.partner_id == viewer.organisation)
    if kind is not None:
        query = query.where(SubjectRequestRow.kind == kind.value)
    return [
        SubjectRequestView(row, (row.completed_at or now) > row.deadline) for row in session.scalars(query)
    ]
