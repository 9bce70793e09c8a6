"""A member's consent record, its lawful basis and its scope, with a content hash for evidence.

A consent record says that a member agreed (or that another lawful basis applies) to one purpose,
for one scope (the partner's own use, the whole federation, or named partners), from ``granted_at``
until it expires or is withdrawn. Withdrawal is recorded as a new record, never by overwriting the
grant (GDPR Art. 7(1): the controller must be able to demonstrate consent; PIPL Art. 15).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policies.purpose import CONSENT_SCOPE_FEDERATION, CONSENT_SCOPE_OWN, Purpose

__all__ = [
    "CONSENT_RECORD_VERSION",
    "ConsentAction",
    "ConsentRecord",
    "LawfulBasis",
    "parse_scope",
    "scope_covers",
]

CONSENT_RECORD_VERSION = 1


class LawfulBasis(StrEnum):
    """Legal bases for processing (GDPR Art. 6(1)(a)-(f); PIPL Art. 13 has all but the last)."""

    CONSENT = "consent"
    # PIPL Art. 31 / GDPR Art. 8: consent given by the holder of parental responsibility.
    GUARDIAN_CONSENT = "guardian_consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


# The bases that are a member's consent: only these make a member "consented".
CONSENT_BASES = frozenset({LawfulBasis.CONSENT, LawfulBasis.GUARDIAN_CONSENT})


class ConsentAction(StrEnum):
    """What a record in a node's consent history does."""

    GRANT = "grant"
    WITHDRAW = "withdraw"


def parse_scope(scope: str | None) -> frozenset[str] | str:
    """Normalise a consent scope: ``"own"``, ``"federation"`` or the set of named partner ids.

    A missing scope means ``"own"``: the narrowest reading is the only safe one (PIPL Art. 14:
    consent must be specific; GDPR Art. 4(11): "specific").
    """
    text = (scope or "").strip()
    if text in ("", CONSENT_SCOPE_OWN):
        return CONSENT_SCOPE_OWN
    if text == CONSENT_SCOPE_FEDERATION:
        return CONSENT_SCOPE_FEDERATION
    partners = frozenset(part.strip() for part in text.split(";") if part.strip())
    if not partners:
        raise ValueError(f"consent scope {scope!r} names no partner")
    return partners


def scope_covers(scope: str | None, recipient: str | None) -> bool:
    """Whether a consent of ``scope`` covers use by ``recipient`` (None: the partner's own use).

    PIPL Art. 23: providing personal information to another handler needs the member's separate
    consent naming that recipient, so "own" never covers another partner, "federation" covers any
    partner of the federation the member was told about, and a list covers exactly its partners.
    Every scope covers the partner's own use.
    """
    parsed = parse_scope(scope)
    if recipient is None:
        return True
    if parsed == CONSENT_SCOPE_OWN:
        return False
    if parsed == CONSENT_SCOPE_FEDERATION:
        return True
    return recipient in parsed


class ConsentRecord(BaseModel):
    """One record of a member's consent history (held at the node only; never leaves it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str = Field(min_length=1)
    purpose: Purpose
    action: ConsentAction = ConsentAction.GRANT
    scope: str = CONSENT_SCOPE_OWN
    lawful_basis: LawfulBasis = LawfulBasis.CONSENT
    granted_at: datetime
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None
    cross_border: bool = False
    sensitive: bool = False
    notice_version: str | None = None

    @field_validator("scope")
    @classmethod
    def _valid_scope(cls, value: str) -> str:
        parse_scope(value)
        return value.strip() or CONSENT_SCOPE_OWN

    def evidence_hash(self) -> str:
        """sha256 of the record's canonical JSON: the evidence that this exact record was held."""
        body = {"version": CONSENT_RECORD_VERSION, **self.model_dump(mode="json")}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
