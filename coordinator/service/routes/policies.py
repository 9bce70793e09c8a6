"""Policies, their versions and diffs, and data officers' signed decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from coordinator.platform import decisions, policy_registry
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.service.api_models import (
    DecisionCreate,
    DecisionPublic,
    FieldChangePublic,
    PolicyCreate,
    PolicyDiffPublic,
    PolicyVersionPublic,
)
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, TrailDep
from coordinator.store.tables import PolicyVersionRow
from policies.approval import ApprovalStatus, PartnerState
from policies.signed_approval import SignedDecision

router = APIRouter(tags=["policies"])


def _public(row: PolicyVersionRow, status: ApprovalStatus, *, document: bool = False) -> PolicyVersionPublic:
    return PolicyVersionPublic(
        policy_id=row.policy_id,
        version=row.version,
        hash=row.policy_hash,
        drafted_at=row.drafted_at,
        partners=sorted(status.states),
        approvals={p: s.value for p, s in sorted(status.states.items())},
        document=row.document if document else None,
    )


def _publics(session: Session, rows: list[PolicyVersionRow]) -> list[PolicyVersionPublic]:
    # Every version's approvals in two queries, not two or more per version.
    statuses = decisions.approvals_of(session, rows)
    return [_public(row, status) for row, status in zip(rows, statuses, strict=True)]


def _public_one(session: Session, row: PolicyVersionRow, *, document: bool = False) -> PolicyVersionPublic:
    return _public(row, decisions.approval_of(session, row), document=document)


@router.post("/policies", response_model=PolicyVersionPublic, status_code=201)
def draft_policy(
    body: PolicyCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> PolicyVersionPublic:
    authorize(principal, ApiAction.POLICY_DRAFT)
    return _public_one(
        session, policy_registry.draft_policy(session, trail, actor=principal, document=body.document)
    )


@router.get("/policies", response_model=list[PolicyVersionPublic])
def list_policies(
    principal: CurrentPrincipal, session: SessionDep, pending_for: str | None = None
) -> list[PolicyVersionPublic]:
    authorize(principal, ApiAction.POLICY_READ)
    rows = _publics(session, policy_registry.latest_versions(session))
    if pending_for is not None:
        rows = [r for r in rows if r.approvals.get(pending_for) == PartnerState.PENDING.value]
    return rows


@router.get("/policies/{policy_id}", response_model=PolicyVersionPublic)
def show_policy(policy_id: str, principal: CurrentPrincipal, session: SessionDep) -> PolicyVersionPublic:
    authorize(principal, ApiAction.POLICY_READ)
    latest = _public_one(session, policy_registry.get_version(session, policy_id), document=True)
    every = _publics(session, policy_registry.versions(session, policy_id))
    return latest.model_copy(update={"versions": every})


@router.get("/policies/{policy_id}/versions/{version}", response_model=PolicyVersionPublic)
def show_version(
    policy_id: str, version: int, principal: CurrentPrincipal, session: SessionDep
) -> PolicyVersionPublic:
    authorize(principal, ApiAction.POLICY_READ)
    return _public_one(session, policy_registry.get_version(session, policy_id, version), document=True)


@router.get("/policies/{policy_id}/diff", response_model=PolicyDiffPublic)
def diff(
    policy_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> PolicyDiffPublic:
    authorize(principal, ApiAction.POLICY_READ)
    changes = policy_registry.diff_versions(session, policy_id, from_version, to_version)
    return PolicyDiffPublic(
        policy_id=policy_id,
        from_version=from_version,
        to_version=to_version,
        changes=[FieldChangePublic(path=c.path, before=c.before, after=c.after) for c in changes],
    )


@router.post(
    "/policies/{policy_id}/versions/{version}/decisions", response_model=DecisionPublic, status_code=201
)
def record_decision(
    policy_id: str,
    version: int,
    body: DecisionCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
) -> DecisionPublic:
    authorize(principal, ApiAction.DECISION_RECORD, organisation=principal.organisation)
    signed = SignedDecision(statement=body.statement, signature=body.signature)
    row = decisions.record_decision(
        session,
        trail,
        actor=principal,
        policy_id=policy_id,
        version=version,
        signed=signed,
        reason=body.reason,
    )
    return DecisionPublic.model_validate(row, from_attributes=True)


@router.get("/policies/{policy_id}/versions/{version}/decisions", response_model=list[DecisionPublic])
def list_decisions(
    policy_id: str, version: int, principal: CurrentPrincipal, session: SessionDep
) -> list[DecisionPublic]:
    authorize(principal, ApiAction.POLICY_READ)
    rows = decisions.decisions_for(session, policy_id, version)
    return [DecisionPublic.model_validate(r, from_attributes=True) for r in rows]
