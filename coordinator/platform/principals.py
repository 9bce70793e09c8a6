"""Principals and their bearer tokens: who is calling, in which role, for which organisation.

A token is ``secrets.token_urlsafe(32)`` (256 bits), shown once and stored as its SHA-256 only, so
a copy of the store grants nothing. The administrator's token is created at the first start and
written to ``DIR/admin.token`` (0600); every other credential is issued by the administrator.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.identifier_guard import identifier_problem
from coordinator.platform.errors import ConflictError, InvalidRequestError, NotAuthenticatedError
from coordinator.store.tables import PrincipalRow
from policies.roles import Role

__all__ = [
    "ADMIN_ORGANISATION",
    "ADMIN_TOKEN_FILE",
    "Principal",
    "authenticate",
    "create_principal",
    "ensure_admin_token",
    "token_digest",
]

ADMIN_ORGANISATION = "federation"
ADMIN_TOKEN_FILE = "admin.token"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated person or service."""

    id: str
    name: str
    role: Role
    organisation: str
    job_id: str | None = None

    @classmethod
    def of(cls, row: PrincipalRow) -> Principal:
        return cls(row.id, row.name, Role(row.role), row.organisation, row.job_id)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(session: Session, token: str | None) -> Principal:
    """The principal holding ``token``; ``NotAuthenticatedError`` for a missing or unknown one."""
    if not token:
        raise NotAuthenticatedError("a bearer token is required")
    digest = token_digest(token)
    row = session.scalar(select(PrincipalRow).where(PrincipalRow.token_sha256 == digest))
    # The lookup is by digest, and the digest comparison below is constant-time.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, digest):
        raise NotAuthenticatedError("the token is not valid")
    return Principal.of(row)


def create_principal(
    session: Session,
    *,
    name: str,
    role: Role,
    organisation: str,
    now: datetime,
    job_id: str | None = None,
    token: str | None = None,
) -> tuple[Principal, str]:
    """Add a principal with a fresh token (not committed); returns it and the token, shown once."""
    if not _NAME.match(name):
        raise InvalidRequestError("name must be 1-64 letters, digits, spaces, '.', '_' or '-'")
    if identifier_problem(name):
        # Names enter the audit log as actors, where identifier-shaped values are refused.
        raise InvalidRequestError("name must not look like a member identifier (phone, e-mail, member id)")
    token = token or secrets.token_urlsafe(32)
    row = PrincipalRow(
        id=uuid.uuid4().hex,
        name=name,
        role=role.value,
        organisation=organisation,
        token_sha256=token_digest(token),
        job_id=job_id,
        created_at=now,
    )
    session.add(row)
    return Principal.of(row), token


def ensure_admin_token(
    session: Session, state_dir: Path, *, now: datetime, bootstrap_token: str | None = None
) -> Path | None:
    """On the first start (no administrator yet) create one and write its token to DIR/admin.token.

    Returns the token file when one was written now, else None. The file is created exclusively
    with mode 0600 before the token is written.
    """
    exists = session.scalar(select(PrincipalRow.id).where(PrincipalRow.role == Role.FEDERATION_ADMIN.value))
    if exists is not None:
        return None
    path = state_dir / ADMIN_TOKEN_FILE
    _principal, token = create_principal(
        session,
        name="federation-admin",
        role=Role.FEDERATION_ADMIN,
        organisation=ADMIN_ORGANISATION,
        now=now,
        token=bootstrap_token,
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as err:
        session.rollback()
        raise ConflictError(f"{path} exists but the store has no administrator; move it away") from err
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    session.commit()
    return path
