"""What nodes report beside their heartbeats: data-subject requests and coarsened consent counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coordinator.platform import consent_counts, subject_requests
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.service.api_models import ConsentCountPublic, SubjectRequestPublic, SubjectRequestsAccepted
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, TrailDep
from protocol.node_reports import ConsentCountReport, SubjectRequestBatch, SubjectRequestKind

router = APIRouter(tags=["node reports"])


@router.post("/nodes/{partner_id}/subject-requests", response_model=SubjectRequestsAccepted)
def report_subject_requests(
    partner_id: str,
    body: SubjectRequestBatch,
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
) -> SubjectRequestsAccepted:
    authorize(principal, ApiAction.SUBJECT_REQUEST_REPORT, organisation=partner_id)
    changed = subject_requests.record_subject_requests(
        session, trail, actor=principal, partner_id=partner_id, batch=body
    )
    return SubjectRequestsAccepted(received=len(body.requests), changed=changed)


@router.get("/subject-requests", response_model=list[SubjectRequestPublic])
def list_subject_requests(
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
    kind: SubjectRequestKind | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[SubjectRequestPublic]:
    authorize(principal, ApiAction.SUBJECT_REQUEST_READ)
    views = subject_requests.list_subject_requests(
        session, viewer=principal, now=trail.clock(), kind=kind, limit=limit
    )
    stored = [name for name in SubjectRequestPublic.model_fields if name != "overdue"]
    return [
        SubjectRequestPublic.model_validate({**{c: getattr(v.row, c) for c in stored}, "overdue": v.overdue})
        for v in views
    ]


@router.put("/nodes/{partner_id}/consent-counts", response_model=list[ConsentCountPublic])
def report_consent_counts(
    partner_id: str,
    body: ConsentCountReport,
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
) -> list[ConsentCountPublic]:
    authorize(principal, ApiAction.CONSENT_COUNT_REPORT, organisation=partner_id)
    rows = consent_counts.record_consent_counts(
        session, trail, actor=principal, partner_id=partner_id, report=body
    )
    return [ConsentCountPublic.model_validate(r, from_attributes=True) for r in rows]


@router.get("/consent-counts", response_model=list[ConsentCountPublic])
def list_consent_counts(
    principal: CurrentPrincipal,
    session: SessionDep,
    purpose: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")] = None,
) -> list[ConsentCountPublic]:
    authorize(principal, ApiAction.CONSENT_COUNT_READ)
    rows = consent_counts.list_consent_counts(session, purpose=purpose)
    return [ConsentCountPublic.model_validate(r, from_attributes=True) for r in rows]
