"""Points interchange at the coordinator: agreements awaiting signature, and settlement totals."""

from __future__ import annotations

from fastapi import APIRouter, status

from coordinator.platform import interchange_agreements as agreements
from coordinator.platform import points_settlements as settlements
from coordinator.platform.errors import NotFoundError
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.platform.principals import Principal
from coordinator.service.api_models import (
    AgreementCreate,
    AgreementPublic,
    AgreementSignatureCreate,
    AgreementSignaturePublic,
    SettlementCreate,
    SettlementPublic,
)
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, TrailDep
from coordinator.store.tables import SettlementRow

router = APIRouter(tags=["points"])


def _party(principal: Principal, partners: tuple[str, ...] | list[str]) -> str:
    """The organisation an organisation-scoped action acts for: the caller's own if it is a party,
    else the first party (so that a non-party is refused by ``authorize``)."""
    return principal.organisation if principal.organisation in partners else partners[0]


def _public(view: agreements.AgreementView, *, full: bool = False) -> AgreementPublic:
    public = AgreementPublic(
        agreement_hash=view.row.agreement_hash,
        agreement_id=view.agreement.agreement_id,
        partners=sorted(view.agreement.partners),
        status=view.status,
        signed_by=list(view.signed_by),
        awaiting=list(view.awaiting),
        valid_from=view.agreement.valid_from,
        valid_until=view.agreement.valid_until,
        currency=view.agreement.currency,
        drafted_at=view.row.drafted_at,
    )
    if not full:
        return public
    signatures = [
        AgreementSignaturePublic(
            partner=s.partner_id,
            officer=s.officer,
            public_key=s.public_key,
            signature=s.signature,
            signed_at=s.signed_at,
            verified=s.partner_id in view.signed_by,
        )
        for s in view.signatures
    ]
    return public.model_copy(update={"document": view.row.document, "signatures": signatures})


@router.post("/points/agreements", response_model=AgreementPublic, status_code=status.HTTP_201_CREATED)
def draft(
    body: AgreementCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> AgreementPublic:
    partners = body.agreement.get("partners")
    named = [p for p in partners if isinstance(p, str)] if isinstance(partners, list) else []
    authorize(principal, ApiAction.AGREEMENT_DRAFT, organisation=_party(principal, named or ["?"]))
    row = agreements.draft_agreement(session, trail, actor=principal, document=body.agreement)
    return _public(agreements.agreement_view(session, row.agreement_hash), full=True)


@router.get("/points/agreements", response_model=list[AgreementPublic])
def list_agreements(
    principal: CurrentPrincipal, session: SessionDep, pending: bool = False
) -> list[AgreementPublic]:
    authorize(principal, ApiAction.AGREEMENT_READ)
    return [_public(v) for v in agreements.list_agreements(session, viewer=principal, pending=pending)]


@router.get("/points/agreements/{agreement_hash}", response_model=AgreementPublic)
def show_agreement(agreement_hash: str, principal: CurrentPrincipal, session: SessionDep) -> AgreementPublic:
    authorize(principal, ApiAction.AGREEMENT_READ)
    view = agreements.agreement_view(session, agreement_hash)
    if not agreements.visible_to(view, principal):
        # Another pair's commercial terms: answered as if absent, so their existence is not revealed.
        raise NotFoundError(f"agreement {agreement_hash[:64]} does not exist")
    return _public(view, full=True)


@router.post(
    "/points/agreements/{agreement_hash}/signatures", response_model=AgreementPublic, status_code=201
)
def sign(
    agreement_hash: str,
    body: AgreementSignatureCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    trail: TrailDep,
) -> AgreementPublic:
    view = agreements.agreement_view(session, agreement_hash)
    authorize(principal, ApiAction.AGREEMENT_SIGN, organisation=_party(principal, view.agreement.partners))
    signature = agreements.parse_signature(body.model_dump())
    agreements.record_signature(
        session, trail, actor=principal, agreement_hash=agreement_hash, signature=signature
    )
    return _public(agreements.agreement_view(session, agreement_hash), full=True)


def _settlement(row: SettlementRow) -> SettlementPublic:
    return SettlementPublic.model_validate(row, from_attributes=True)


@router.post("/points/settlements", response_model=SettlementPublic, status_code=status.HTTP_201_CREATED)
def report_settlement(
    body: SettlementCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> SettlementPublic:
    authorize(principal, ApiAction.SETTLEMENT_REPORT, organisation=_party(principal, body.pair))
    return _settlement(settlements.record_settlement(session, trail, actor=principal, totals=body))


@router.get("/points/settlements", response_model=list[SettlementPublic])
def list_settlements(
    principal: CurrentPrincipal, session: SessionDep, status: settlements.SettlementStatus | None = None
) -> list[SettlementPublic]:
    authorize(principal, ApiAction.SETTLEMENT_READ)
    return [_settlement(r) for r in settlements.list_settlements(session, viewer=principal, status=status)]
