"""PSI run summaries reported by nodes: counts and status only, never identifiers or group elements.

The body is the node's own audit record of a run (``participant_node.matching.run_record``,
``MatchingRunRecord.as_dict()``): who ran it with whom, for which purpose and mode, the set sizes
and the result's cardinality (absent when the run was refused or aborted). The reporting partner is
the node's organisation from its credential and must match the record's ``partner``. A record sent
again (same partner and session) is acknowledged once and not duplicated.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import InvalidRequestError
from coordinator.platform.principals import ADMIN_ORGANISATION, Principal
from coordinator.store.tables import PsiRunRow

__all__ = ["PsiRunStatus", "PsiRunSummary", "list_psi_runs", "record_psi_run"]

PartnerId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Token = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
Count = Annotated[int, Field(ge=0, le=10**12)]


class PsiRunStatus(StrEnum):
    COMPLETED = "completed"
    REFUSED = "refused"
    ABORTED = "aborted"
    EXPIRED = "expired"


class PsiRunSummary(BaseModel):
    """A node's record of one PSI run (version 2 of its run record)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: Literal[2] = 2
    session_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
    role: Literal["initiator", "responder"]
    partner: PartnerId
    peer: PartnerId
    purpose: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
    mode: Token
    own_set_size: Count | None = None
    peer_set_size: Count | None = None
    result_cardinality: Count | None = None
    consent_snapshot_hash: Annotated[str, Field(pattern=r"^(sha256:)?[0-9a-f]{16,128}$")] | None = None
    at: datetime
    status: PsiRunStatus = PsiRunStatus.COMPLETED
    refusal: Token | None = None
    peer_authentication: Token | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PsiRunSummary:
        if self.at.tzinfo is None:
            raise ValueError("at must carry a UTC offset")
        if self.status is PsiRunStatus.COMPLETED and self.result_cardinality is None:
            raise ValueError("a completed run reports its result_cardinality")
        if self.status is PsiRunStatus.REFUSED and self.refusal is None:
            raise ValueError("a refused run names the rule that refused it (refusal)")
        sizes = [s for s in (self.own_set_size, self.peer_set_size) if s is not None]
        if self.result_cardinality is not None and any(self.result_cardinality > s for s in sizes):
            raise ValueError("result_cardinality cannot exceed a set size")
        return self


def record_psi_run(
    session: Session, trail: AuditTrail, *, actor: Principal, summary: PsiRunSummary
) -> PsiRunRow:
    """Store ``actor``'s node's summary (idempotent by partner and session id)."""
    if summary.partner != actor.organisation:
        raise InvalidRequestError(f"a node reports its own runs: partner must be {actor.organisation}")
    if summary.peer == summary.partner:
        raise InvalidRequestError("a PSI run is between two different partners")
    existing = session.scalar(
        select(PsiRunRow).where(
            PsiRunRow.partner_id == summary.partner, PsiRunRow.session_id == summary.session_id
        )
    )
    if existing is not None:
        return existing
    row = PsiRunRow(
        partner_id=summary.partner,
        session_id=summary.session_id,
        psi_role=summary.role,
        peer=summary.peer,
        purpose=summary.purpose,
        mode=summary.mode,
        own_set_size=summary.own_set_size,
        peer_set_size=summary.peer_set_size,
        result_cardinality=summary.result_cardinality,
        status=summary.status.value,
        refusal=summary.refusal,
        ran_at=summary.at,
        reported_at=trail.clock(),
    )
    session.add(row)
    counts = (
        {"result_cardinality": summary.result_cardinality} if summary.result_cardinality is not None else {}
    )
    trail.commit(
        session,
        EventType.PSI_RUN_REPORTED,
        actor,
        partner=summary.partner,
        partners=tuple(sorted((summary.partner, summary.peer))),
        purpose=summary.purpose,
        details={"status": summary.status.value, "mode": summary.mode, **counts},
    )
    return row


def list_psi_runs(session: Session, *, viewer: Principal, limit: int = 500) -> list[PsiRunRow]:
    """Runs the viewer may see (a partner's people: runs their partner took part in), newest first."""
    query = select(PsiRunRow).order_by(PsiRunRow.ran_at.desc(), PsiRunRow.id.desc()).limit(limit)
    if viewer.organisation != ADMIN_ORGANISATION:
        query = query.where(
            or_(PsiRunRow.partner_id == viewer.organisation, PsiRunRow.peer == viewer.organisation)
        )
    return list(session.scalars(query))
