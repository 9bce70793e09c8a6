"""Budgets and the model registry."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from coordinator.platform import budgets, model_registry
from coordinator.platform.budget_usage import budget_usage as budget_usage_of
from coordinator.platform.errors import InvalidRequestError
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.service.api_models import BudgetPublic, BudgetSet, ModelCreate, ModelPublic
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, TrailDep
from coordinator.store.tables import ModelRow

router = APIRouter()


def _budget(view: budgets.BudgetView) -> BudgetPublic:
    return BudgetPublic(
        partner_id=view.partner_id,
        year=view.year,
        epsilon_cap=view.epsilon_cap,
        epsilon_reserved=view.epsilon_reserved,
        epsilon_remaining=view.epsilon_remaining,
        epsilon_held=view.epsilon_held,
    )


@router.get("/budgets", response_model=list[BudgetPublic], tags=["budgets"])
def list_budgets(
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
    partner: str | None = None,
    year: int | None = None,
) -> list[BudgetPublic]:
    authorize(principal, ApiAction.BUDGET_READ)
    views = budgets.list_budgets(session, year=year or trail.clock().year, partner=partner)
    return [_budget(v) for v in views]


@router.get("/budgets/{partner_id}/usage", tags=["budgets"])
def budget_usage(
    partner_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
    year: Annotated[int | None, Query(ge=2000, le=2200)] = None,
) -> dict[str, Any]:
    """The partner's ε by purpose and dataset, month by month over the year, against its cap."""
    authorize(principal, ApiAction.BUDGET_READ)
    usage = budget_usage_of(session, partner_id=partner_id, year=year or trail.clock().year)
    return {
        "partner_id": usage.partner_id,
        "year": usage.year,
        "epsilon_cap": usage.epsilon_cap,
        "series": [
            {"purpose": s.purpose, "dataset": s.dataset, "months": s.months, "epsilon": s.epsilon,
             "jobs": len(s.jobs)}
            for s in usage.series
        ],
    }  # fmt: skip


@router.put("/budgets/{partner_id}/{year}", response_model=BudgetPublic, tags=["budgets"])
def set_budget(
    partner_id: str,
    year: int,
    body: BudgetSet,
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
) -> BudgetPublic:
    authorize(principal, ApiAction.BUDGET_SET, organisation=partner_id)
    budgets.set_cap(
        session, trail, actor=principal, partner_id=partner_id, year=year, epsilon_cap=body.epsilon_cap
    )
    return _budget(budgets.list_budgets(session, year=year, partner=partner_id)[0])


def _model(row: ModelRow, *, card: bool = False) -> ModelPublic:
    return ModelPublic(
        model_id=row.id,
        job_id=row.job_id,
        task=row.task,
        artefact_sha256=row.artefact_sha256,
        artefact_size=row.artefact_size,
        published_at=row.published_at,
        card=row.card if card else None,
    )


@router.post("/models", response_model=ModelPublic, status_code=201, tags=["models"])
def publish(
    body: ModelCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> ModelPublic:
    authorize(principal, ApiAction.MODEL_PUBLISH, job_id=body.job_id)
    try:
        weights = base64.b64decode(body.weights_b64, validate=True)
    except binascii.Error as err:
        raise InvalidRequestError("weights_b64 is not base64") from err
    row = model_registry.publish_model(
        session,
        trail,
        actor=principal,
        job_id=body.job_id,
        card=body.card,
        weights=weights,
        sha256=body.sha256,
    )
    return _model(row, card=True)


@router.get("/models", response_model=list[ModelPublic], tags=["models"])
def list_models(
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    task: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ModelPublic]:
    """Newest first; with ``limit``, one page of them and the total in ``X-Total-Count``."""
    authorize(principal, ApiAction.MODEL_READ)
    rows = model_registry.list_models(session, task=task, limit=limit, offset=offset)
    total = model_registry.count_models(session, task=task) if limit is not None else len(rows)
    response.headers["X-Total-Count"] = str(total)
    return [_model(r) for r in rows]


@router.get("/models/{model_id}", response_model=ModelPublic, tags=["models"])
def show_model(model_id: str, principal: CurrentPrincipal, session: SessionDep) -> ModelPublic:
    authorize(principal, ApiAction.MODEL_READ)
    return _model(model_registry.get_model(session, model_id), card=True)


@router.get("/models/{model_id}/download", tags=["models"], response_class=Response)
def download(model_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    authorize(principal, ApiAction.MODEL_DOWNLOAD)
    row = model_registry.get_model(session, model_id)
    return Response(
        row.artefact,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{row.id}.pt"',
            "X-Artefact-SHA256": row.artefact_sha256,
        },
    )
