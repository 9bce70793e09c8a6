"""Organisations of the federation, the credentials issued to their people, officers' public keys."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from coordinator.platform.principals import ADMIN_ORGANISATION, Principal, create_principal
from coordinator.store.tables import OfficerKeyRow, OrganisationRow
from policies.roles import Role
from policies.signed_approval import SigningKeyError, public_key_from_b64

__all__ = [
    "OrganisationKind",
    "create_organisation",
    "get_organisation",
    "issue_token",
    "list_organisations",
    "officer_keys",
    "officer_keys_of",
    "register_officer_key",
]


class OrganisationKind(StrEnum):
    STORE_GROUP = "store_group"
    BRAND = "brand"


# Roles that act for one partner organisation; the others belong to the federation itself.
_PARTNER_ROLES = frozenset({Role.DATA_OFFICER, Role.NODE, Role.PARTNER_OPERATOR})


def create_organisation(
    session: Session,
    trail: AuditTrail,
    *,
    actor: Principal,
    org_id: str,
    name: str,
    kind: OrganisationKind,
    region: str,
) -> OrganisationRow:
    if org_id == ADMIN_ORGANISATION or session.get(OrganisationRow, org_id) is not None:
        raise ConflictError(f"organisation {org_id} already exists")
    row = OrganisationRow(id=org_id, name=name, kind=kind.value, region=region, created_at=trail.clock())
    session.add(row)
    trail.commit(
        session, EventType.ORGANISATION_REGISTERED, actor, partner=org_id, details={"kind": kind.value}
    )
    return row


def get_organisation(session: Session, org_id: str) -> OrganisationRow:
    row = session.get(OrganisationRow, org_id)
    if row is None:
        raise NotFoundError(f"organisation {org_id} is not registered")
    return row


def list_organisations(session: Session) -> list[OrganisationRow]:
    return list(session.scalars(select(OrganisationRow).order_by(OrganisationRow.id)))


def issue_token(
    session: Session, trail: AuditTrail, *, actor: Principal, name: str, role: Role, organisation: str
) -> tuple[Principal, str]:
    """A new credential bound to ``role`` and ``organisation``; the token is returned once."""
    if role is Role.JOB_RUN:
        raise InvalidRequestError("job-run credentials are minted by the coordinator for each job")
    if role in _PARTNER_ROLES or organisation != ADMIN_ORGANISATION:
        get_organisation(session, organisation)
    principal, token = create_principal(
        session, name=name, role=role, organisation=organisation, now=trail.clock()
    )
    trail.commit(
        session,
        EventType.CREDENTIAL_ISSUED,
        actor,
        partner=organisation if role in _PARTNER_ROLES else None,
        details={"role": role.value},
    )
    return principal, token


def register_officer_key(
    session: Session, trail: AuditTrail, *, actor: Principal, public_key_b64: str
) -> OfficerKeyRow:
    """Register a data officer's Ed25519 public key for their own organisation."""
    try:
        public_key_from_b64(public_key_b64)
    except SigningKeyError as err:
        raise InvalidRequestError("public_key_b64 is not a base64 Ed25519 public key") from err
    get_organisation(session, actor.organisation)
    key = public_key_b64.strip()
    if session.get(OfficerKeyRow, key) is not None:
        raise ConflictError("this officer key is already registered")
    row = OfficerKeyRow(
        public_key_b64=key,
        organisation=actor.organisation,
        principal_id=actor.id,
        registered_at=trail.clock(),
    )
    session.add(row)
    trail.commit(session, EventType.OFFICER_KEY_REGISTERED, actor, partner=actor.organisation)
    return row


def officer_keys(session: Session, organisation: str) -> list[str]:
    query = select(OfficerKeyRow.public_key_b64).where(OfficerKeyRow.organisation == organisation)
    return list(session.scalars(query))


def officer_keys_of(session: Session, organisations: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``officer_keys`` of several organisations in one query (an organisation without keys: ``()``)."""
    wanted = set(organisations)
    keys: dict[str, list[str]] = {organisation: [] for organisation in wanted}
    if wanted:
        query = select(OfficerKeyRow.organisation, OfficerKeyRow.public_key_b64).where(
            OfficerKeyRow.organisation.in_(wanted)
        )
        for organisation, key in session.execute(query):
            keys[organisation].append(key)
    return {organisation: tuple(found) for organisation, found in keys.items()}
