"""Partner nodes and their dataset summaries."""

from __future__ import annotations

from fastapi import APIRouter

from coordinator.budget_recovery import NodeSpent, held_jobs, settle_reported
from coordinator.platform import datasets, nodes
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.service.api_models import (
    AuditResetCreate,
    AuditResetPublic,
    DatasetCreate,
    DatasetPublic,
    HeartbeatAnswer,
    HeartbeatCreate,
    NodePublic,
    NodeRegister,
    NodeRegistered,
    SettleJobPublic,
)
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, StateDep, TrailDep

router = APIRouter(tags=["nodes"])


@router.post("/nodes/register", response_model=NodeRegistered)
def register_node(
    body: NodeRegister, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep, state: StateDep
) -> NodeRegistered:
    authorize(principal, ApiAction.NODE_REGISTER, organisation=body.partner_id)
    nodes.register_node(
        session,
        trail,
        state.superlink,
        actor=principal,
        partner_id=body.partner_id,
        version=body.version,
        api_url=body.api_url,
        tls_certificate_pem=body.tls_certificate_pem,
        supernode_public_key_pem=body.supernode_public_key_pem,
    )
    registrar = state.superlink
    assert registrar is not None  # register_node refuses without a SuperLink
    return NodeRegistered(
        superlink_address=registrar.address, superlink_root_certificate_pem=registrar.root_certificate_pem
    )


@router.post("/nodes/{partner_id}/heartbeat", response_model=HeartbeatAnswer)
def heartbeat(
    partner_id: str, body: HeartbeatCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> HeartbeatAnswer:
    authorize(principal, ApiAction.NODE_HEARTBEAT, organisation=partner_id)
    answer = nodes.heartbeat(
        session,
        trail,
        partner_id=partner_id,
        version=body.version,
        audit_head=body.audit_head,
        coordinator_tree_size=body.coordinator_tree_size,
        now=trail.clock(),
    )
    reports = [NodeSpent(r.job_id, r.epsilon, r.delta, r.steps) for r in body.privacy_spent]
    settle_reported(session, trail, actor=principal, partner_id=partner_id, reports=reports)
    return HeartbeatAnswer(
        audit_tree_size=answer.audit_tree_size,
        coordinator_head=answer.coordinator_head,
        settle_jobs=[
            SettleJobPublic(job_id=h.job_id, purpose=h.purpose) for h in held_jobs(session, partner_id)
        ],
    )


@router.post("/nodes/{partner_id}/audit-reset", response_model=AuditResetPublic)
def reset_audit_pin(
    partner_id: str, body: AuditResetCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> AuditResetPublic:
    """The partner's data officer vouches that its node's audit log was lost or restored: the head
    kept of it is forgotten (and named in the coordinator's log), and the next heartbeat pins anew."""
    authorize(principal, ApiAction.NODE_AUDIT_RESET, organisation=partner_id)
    forgotten = nodes.reset_audit_pin(
        session, trail, actor=principal, partner_id=partner_id, reason=body.reason
    )
    return AuditResetPublic(
        partner_id=partner_id,
        reason=body.reason,
        forgotten_tree_size=forgotten.tree_size if forgotten else None,
        forgotten_root_hash=forgotten.root_hash if forgotten else None,
        forgotten_log_id=forgotten.log_id if forgotten else None,
    )


@router.get("/nodes", response_model=list[NodePublic])
def list_nodes(principal: CurrentPrincipal, session: SessionDep, trail: TrailDep) -> list[NodePublic]:
    authorize(principal, ApiAction.NODE_READ)
    return [
        NodePublic.model_validate(s, from_attributes=True)
        for s in nodes.list_nodes(session, now=trail.clock())
    ]


@router.post("/datasets", response_model=DatasetPublic, status_code=201)
def register_dataset(
    body: DatasetCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> DatasetPublic:
    authorize(principal, ApiAction.DATASET_REGISTER, organisation=body.partner_id)
    row = datasets.register_dataset(
        session,
        trail,
        actor=principal,
        partner_id=body.partner_id,
        name=body.name,
        tables={name: table.model_dump() for name, table in body.tables.items()},
    )
    return DatasetPublic.model_validate(row, from_attributes=True)


@router.get("/datasets", response_model=list[DatasetPublic])
def list_datasets(
    principal: CurrentPrincipal, session: SessionDep, partner: str | None = None
) -> list[DatasetPublic]:
    authorize(principal, ApiAction.DATASET_READ)
    return [
        DatasetPublic.model_validate(r, from_attributes=True)
        for r in datasets.list_datasets(session, partner=partner)
    ]
