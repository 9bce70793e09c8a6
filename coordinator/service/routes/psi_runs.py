"""PSI run summaries (counts only) reported by the nodes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from coordinator.platform import psi_runs
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.service.api_models import PsiRunCreate, PsiRunPublic
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, TrailDep

router = APIRouter(tags=["psi"])


@router.post("/psi/runs", response_model=PsiRunPublic, status_code=status.HTTP_201_CREATED)
def report(
    body: PsiRunCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> PsiRunPublic:
    authorize(principal, ApiAction.PSI_RUN_REPORT, organisation=body.partner)
    row = psi_runs.record_psi_run(session, trail, actor=principal, summary=body)
    return PsiRunPublic.model_validate(row, from_attributes=True)


@router.get("/psi/runs", response_model=list[PsiRunPublic])
def list_runs(
    principal: CurrentPrincipal, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[PsiRunPublic]:
    authorize(principal, ApiAction.PSI_RUN_READ)
    return [
        PsiRunPublic.model_validate(r, from_attributes=True)
        for r in psi_runs.list_psi_runs(session, viewer=principal, limit=limit)
    ]
