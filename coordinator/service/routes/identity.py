"""Health, the caller's identity, credentials, organisations and officer keys."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, status

from coordinator.platform import organisations as orgs
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.service.api_models import (
    HealthPublic,
    MePublic,
    OfficerKeyCreate,
    OfficerKeyPublic,
    OrganisationCreate,
    OrganisationPublic,
    TokenCreate,
    TokenIssued,
)
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, StateDep, TrailDep

router = APIRouter()


@cache
def _version() -> str:
    try:
        return version("loyalfed")
    except PackageNotFoundError:
        return "unknown"


@router.get("/health", response_model=HealthPublic, tags=["service"])
async def health(state: StateDep) -> HealthPublic:  # no I/O: served on the event loop
    running = state.superlink is not None and state.superlink.running
    return HealthPublic(superlink="running" if running else "stopped", version=_version())


@router.get("/me", response_model=MePublic, tags=["service"])
def me(principal: CurrentPrincipal) -> MePublic:
    authorize(principal, ApiAction.ME_READ)
    return MePublic(name=principal.name, role=principal.role, organisation=principal.organisation)


@router.post("/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED, tags=["identity"])
def issue_token(
    body: TokenCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> TokenIssued:
    authorize(principal, ApiAction.TOKEN_ISSUE)
    issued, token = orgs.issue_token(
        session, trail, actor=principal, name=body.name, role=body.role, organisation=body.organisation
    )
    return TokenIssued(token=token, name=issued.name, role=issued.role, organisation=issued.organisation)


@router.post("/organisations", response_model=OrganisationPublic, status_code=201, tags=["identity"])
def create_organisation(
    body: OrganisationCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> OrganisationPublic:
    authorize(principal, ApiAction.ORGANISATION_CREATE)
    row = orgs.create_organisation(
        session, trail, actor=principal, org_id=body.id, name=body.name, kind=body.kind, region=body.region
    )
    return OrganisationPublic.model_validate(row, from_attributes=True)


@router.get("/organisations", response_model=list[OrganisationPublic], tags=["identity"])
def list_organisations(principal: CurrentPrincipal, session: SessionDep) -> list[OrganisationPublic]:
    authorize(principal, ApiAction.ORGANISATION_READ)
    return [
        OrganisationPublic.model_validate(r, from_attributes=True) for r in orgs.list_organisations(session)
    ]


@router.post("/officers/keys", response_model=OfficerKeyPublic, status_code=201, tags=["identity"])
def register_officer_key(
    body: OfficerKeyCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> OfficerKeyPublic:
    authorize(principal, ApiAction.OFFICER_KEY_REGISTER, organisation=principal.organisation)
    row = orgs.register_officer_key(session, trail, actor=principal, public_key_b64=body.public_key_b64)
    return OfficerKeyPublic.model_validate(row, from_attributes=True)
