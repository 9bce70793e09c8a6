"""Points-interchange agreements at the coordinator: drafts awaiting both officers' signatures.

An agreement (``policies.interchange_agreement``) is identified by the sha256 of its canonical
JSON; each partner's data officer signs that hash with their own Ed25519 key (RFC 8032), made on
their own machine, so the coordinator can neither forge nor flip a signature. Like a policy
decision, a signature is verified at the edge against the officer keys *registered for the
signer's organisation* (never the key the signature carries by itself), for the exact hash and
partner it names; the coordinator stores it as signed and re-verifies every stored signature when
it reports who has signed, so an edited row counts for nothing. Nodes verify again with the keys
they were configured with (``SignedAgreement.verify``): the coordinator's word is not enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from coordinator.platform.organisations import officer_keys
from coordinator.platform.principals import ADMIN_ORGANISATION, Principal
from coordinator.store.tables import AgreementRow, AgreementSignatureRow
from policies.interchange_agreement import (
    AgreementError,
    AgreementSignature,
    InterchangeAgreement,
    parse_agreement,
    signature_verifies,
)
from policies.signed_approval import SignatureRejectedError, public_key_from_b64

__all__ = [
    "AgreementStatus",
    "AgreementView",
    "agreement_view",
    "draft_agreement",
    "list_agreements",
    "parse_signature",
    "record_signature",
    "signed_at_of",
    "visible_to",
]


class AgreementStatus(StrEnum):
    AWAITING_SIGNATURE = "awaiting_signature"  # at least one partner's officer has not signed
    SIGNED = "signed"  # both officers signed this exact hash (in force within its validity window)


@dataclass(frozen=True)
class AgreementView:
    row: AgreementRow
    agreement: InterchangeAgreement
    signed_by: tuple[str, ...]  # partners whose stored signature verifies now
    signatures: tuple[AgreementSignatureRow, ...]

    @property
    def awaiting(self) -> tuple[str, ...]:
        return tuple(p for p in self.agreement.partners if p not in self.signed_by)

    @property
    def status(self) -> AgreementStatus:
        return AgreementStatus.AWAITING_SIGNATURE if self.awaiting else AgreementStatus.SIGNED


def draft_agreement(
    session: Session, trail: AuditTrail, *, actor: Principal, document: dict[str, Any]
) -> AgreementRow:
    """Store a drafted agreement (validated, arbitrage-guarded); the same document again is a conflict."""
    try:
        agreement = parse_agreement(document, source="agreement")
    except AgreementError as err:
        raise InvalidRequestError(str(err)) from err
    digest = agreement.content_hash()
    if session.get(AgreementRow, digest) is not None:
        raise ConflictError(f"agreement {agreement.agreement_id} with hash {digest[:12]}… is already drafted")
    a, b = sorted(agreement.partners)
    row = AgreementRow(
        agreement_hash=digest,
        agreement_id=agreement.agreement_id,
        partner_a=a,
        partner_b=b,
        document=agreement.model_dump(mode="json"),
        drafted_by=actor.id,
        drafted_at=trail.clock(),
    )
    session.add(row)
    trail.commit(
        session,
        EventType.AGREEMENT_DRAFTED,
        actor,
        partner=actor.organisation,
        partners=(a, b),
        policy_hash=digest,
    )
    return row


def parse_signature(data: Any) -> AgreementSignature:
    try:
        return AgreementSignature.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InvalidRequestError(f"signature: field {where}: {first['msg']}") from err


def _verifies(session: Session, agreement_hash: str, signature: AgreementSignature) -> bool:
    """The signature verifies under an officer key registered for its partner, for this exact hash."""
    keys = (public_key_from_b64(k) for k in officer_keys(session, signature.partner))
    return any(signature_verifies(key, signature, agreement_hash) for key in keys)


def record_signature(
    session: Session,
    trail: AuditTrail,
    *,
    actor: Principal,
    agreement_hash: str,
    signature: AgreementSignature,
) -> AgreementSignatureRow:
    """Verify and store ``actor``'s officer signature on the agreement ``agreement_hash``."""
    view = agreement_view(session, agreement_hash)
    if signature.partner != actor.organisation or signature.partner not in view.agreement.partners:
        raise SignatureRejectedError()
    if not _verifies(session, agreement_hash, signature):
        raise SignatureRejectedError()
    duplicate = select(AgreementSignatureRow.id).where(AgreementSignatureRow.signature == signature.signature)
    if session.scalar(duplicate) is not None:
        raise ConflictError("this signature was already recorded (replayed)")
    row = AgreementSignatureRow(
        agreement_hash=agreement_hash,
        partner_id=signature.partner,
        officer=signature.officer,
        public_key=signature.public_key,
        signature=signature.signature,
        signed_at=signature.signed_at,
        recorded_by=actor.id,
        recorded_at=trail.clock(),
    )
    session.add(row)
    trail.commit(
        session,
        EventType.AGREEMENT_SIGNED,
        actor,
        partner=signature.partner,
        partners=tuple(sorted(view.agreement.partners)),
        policy_hash=agreement_hash,
    )
    return row


def _view(session: Session, row: AgreementRow) -> AgreementView:
    signatures = tuple(
        session.scalars(
            select(AgreementSignatureRow)
            .where(AgreementSignatureRow.agreement_hash == row.agreement_hash)
            .order_by(AgreementSignatureRow.id)
        )
    )
    parties = (row.partner_a, row.partner_b)
    signed = {
        s.partner_id
        for s in signatures
        if s.partner_id in parties and _verifies(session, row.agreement_hash, _as_signature(s))
    }
    agreement = InterchangeAgreement.model_validate(row.document)
    return AgreementView(row, agreement, tuple(sorted(signed)), signatures)


def _as_signature(row: AgreementSignatureRow) -> AgreementSignature:
    return AgreementSignature(
        partner=row.partner_id,
        officer=row.officer,
        agreement_hash=row.agreement_hash,
        public_key=row.public_key,
        signature=row.signature,
        signed_at=row.signed_at,
    )


def agreement_view(session: Session, agreement_hash: str) -> AgreementView:
    row = session.get(AgreementRow, agreement_hash)
    if row is None:
        raise NotFoundError(f"agreement {agreement_hash[:64]} does not exist")
    return _view(session, row)


def list_agreements(session: Session, *, viewer: Principal, pending: bool = False) -> list[AgreementView]:
    """Agreements the viewer may see (a partner's people: their own; the federation's: all), newest first."""
    query = select(AgreementRow).order_by(AgreementRow.drafted_at.desc())
    if viewer.organisation != ADMIN_ORGANISATION:
        query = query.where(
            or_(AgreementRow.partner_a == viewer.organisation, AgreementRow.partner_b == viewer.organisation)
        )
    views = [_view(session, row) for row in session.scalars(query)]
    return [v for v in views if v.awaiting] if pending else views


def visible_to(view: AgreementView, viewer: Principal) -> bool:
    return viewer.organisation == ADMIN_ORGANISATION or viewer.organisation in view.agreement.partners


def signed_at_of(view: AgreementView) -> dict[str, datetime]:
    return {s.partner_id: s.signed_at for s in view.signatures if s.partner_id in view.signed_by}
