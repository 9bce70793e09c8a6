"""The audit log as the console and scripts read it: head, consistency, events, lineage, exports.

Auditors and the federation administrator read every event; everyone else reads the events that
name their own organisation. The auditor's checks themselves (signature against a pinned key,
consistency from a saved head) run on the reader's side.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from audit import EventType
from audit.errors import AuditError
from coordinator.platform import audit_reads
from coordinator.platform.audit_reads import EventFilter
from coordinator.platform.errors import InvalidRequestError, NotFoundError
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.platform.principals import Principal
from coordinator.service.dependencies import CurrentPrincipal, TrailDep
from policies.roles import Role

router = APIRouter(prefix="/audit", tags=["audit"])

_READS_ALL = frozenset({Role.AUDITOR, Role.FEDERATION_ADMIN})
Size = Annotated[int, Query(ge=0, le=2**62)]


def _filter(
    principal: Principal,
    *,
    partner: str | None = None,
    job: str | None = None,
    since: date | None = None,
    until: date | None = None,
    event_type: EventType | None = None,
) -> EventFilter:
    authorize(principal, ApiAction.AUDIT_READ)
    scope = None if principal.role in _READS_ALL else principal.organisation
    start = datetime.combine(since, time.min, tzinfo=UTC) if since else None
    end = datetime.combine(until, time.max, tzinfo=UTC) if until else None
    return EventFilter(scope=scope, partner=partner, job=job, since=start, until=end, event_type=event_type)


@router.get("/head")
def head(principal: CurrentPrincipal, trail: TrailDep) -> dict[str, Any]:
    """The newest signed tree head (RFC 9162 §4.10) and the log's public key."""
    _filter(principal)
    latest = audit_reads.latest_head(trail.log)
    if latest is None:
        raise NotFoundError("the audit log is empty: no signed tree head yet")
    return {**latest.model_dump(), "public_key": trail.log.public_key_hex}


@router.get("/consistency")
def consistency(principal: CurrentPrincipal, trail: TrailDep, first: Size, second: Size) -> dict[str, Any]:
    """A consistency proof from size ``first`` to size ``second`` (hex nodes)."""
    _filter(principal)
    if first > second:
        raise InvalidRequestError("first must not exceed second")
    try:
        proof = audit_reads.consistency(trail.log, first, second)
    except AuditError as err:
        raise InvalidRequestError(str(err)) from err
    return {"first": first, "second": second, "proof": proof}


@router.get("/events")
def events(
    principal: CurrentPrincipal,
    trail: TrailDep,
    partner: str | None = None,
    job: str | None = None,
    since: date | None = None,
    until: date | None = None,
    event_type: EventType | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    which = _filter(principal, partner=partner, job=job, since=since, until=until, event_type=event_type)
    if event_type is EventType.CONSENT_ERASED:
        return audit_reads.erasures(trail.events, which)[offset : offset + limit]
    return audit_reads.events_page(trail.events, which, offset=offset, limit=limit)


@router.get("/lineage")
def lineage(
    principal: CurrentPrincipal,
    trail: TrailDep,
    partner: str | None = None,
    job: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> dict[str, Any]:
    """Datasets → jobs → models with policies and approvals, for the events in the filter."""
    which = _filter(principal, partner=partner, job=job, since=since, until=until)
    return audit_reads.federation_lineage(trail.events, which)


@router.get("/openlineage")
def openlineage(principal: CurrentPrincipal, trail: TrailDep) -> list[dict[str, Any]]:
    return audit_reads.openlineage_events(trail.events, _filter(principal))


@router.get("/anomalies")
def anomalies(principal: CurrentPrincipal, trail: TrailDep) -> list[dict[str, object]]:
    return audit_reads.anomalies(trail.events, _filter(principal))
