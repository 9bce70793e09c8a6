"""The coordinator's tables (SQLAlchemy 2 declarative): what the control plane stores.

Table models only; the API's request and reply models live in ``coordinator.service.api_models``
(the FastAPI full-stack template's split: table ``X``, API ``XCreate``/``XPublic``). Secrets are
never stored: tokens as SHA-256 digests, SuperNode and officer keys as public keys only. The
schema is created and evolved by the Alembic migrations beside this module, never by
``create_all``, so SQLite and PostgreSQL stores follow one history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AgreementRow",
    "AgreementSignatureRow",
    "Base",
    "BudgetCapRow",
    "BudgetChargeRow",
    "ConsentCountRow",
    "DatasetRow",
    "DecisionRow",
    "JobLogRow",
    "JobRefusalRow",
    "JobRoundRow",
    "JobRow",
    "ModelRow",
    "NodeRow",
    "OfficerKeyRow",
    "OrganisationRow",
    "PolicyVersionRow",
    "PrincipalRow",
    "PsiRunRow",
    "SettlementRow",
    "SubjectRequestRow",
    "UtcDateTime",
]

_ID = String(64)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the offset; this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store keeps timezone-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class OrganisationRow(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PrincipalRow(Base):
    """A person or service with a bearer token bound to one role and one organisation."""

    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    organisation: Mapped[str] = mapped_column(_ID)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OfficerKeyRow(Base):
    __tablename__ = "officer_keys"

    public_key_b64: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation: Mapped[str] = mapped_column(_ID, ForeignKey("organisations.id"), index=True)
    principal_id: Mapped[str] = mapped_column(_ID, ForeignKey("principals.id"))
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NodeRow(Base):
    __tablename__ = "nodes"

    partner_id: Mapped[str] = mapped_column(_ID, ForeignKey("organisations.id"), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    api_url: Mapped[str] = mapped_column(String(500))
    tls_certificate_pem: Mapped[str] = mapped_column(Text)
    supernode_public_key_pem: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_heartbeat: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    audit_tree_head: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)


class DatasetRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("partner_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(_ID, ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    tables: Mapped[dict[str, Any]] = mapped_column(JSON)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PolicyVersionRow(Base):
    __tablename__ = "policy_versions"

    policy_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_hash: Mapped[str] = mapped_column(String(64), unique=True)
    document: Mapped[dict[str, object]] = mapped_column(JSON)
    drafted_by: Mapped[str] = mapped_column(String(128))
    drafted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DecisionRow(Base):
    """A data officer's signed decision, stored as signed (statement bytes and signature)."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_id: Mapped[str] = mapped_column(_ID, index=True)
    policy_version: Mapped[int] = mapped_column(Integer)
    policy_hash: Mapped[str] = mapped_column(String(64), index=True)
    partner_id: Mapped[str] = mapped_column(_ID)
    decision: Mapped[str] = mapped_column(String(16))
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str] = mapped_column(String(32), unique=True)
    # Outside the signature: the officer's words, shown to the analyst (PIPL/GDPR: say why).
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_by: Mapped[str] = mapped_column(_ID)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    policy_id: Mapped[str] = mapped_column(_ID)
    policy_version: Mapped[int] = mapped_column(Integer)
    policy_hash: Mapped[str] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(_ID)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    flower_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_id: Mapped[str | None] = mapped_column(_ID, nullable=True)


class JobRoundRow(Base):
    __tablename__ = "job_rounds"

    job_id: Mapped[str] = mapped_column(_ID, ForeignKey("jobs.id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    nodes_answered: Mapped[int] = mapped_column(Integer)
    epsilon_spent: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, object]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class JobRefusalRow(Base):
    __tablename__ = "job_refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(_ID, ForeignKey("jobs.id"), index=True)
    partner_id: Mapped[str] = mapped_column(_ID)
    reason: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class JobLogRow(Base):
    __tablename__ = "job_logs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(_ID, ForeignKey("jobs.id"), index=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class BudgetCapRow(Base):
    __tablename__ = "budget_caps"

    partner_id: Mapped[str] = mapped_column(_ID, ForeignKey("organisations.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    epsilon_cap: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(_ID)
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)


class BudgetChargeRow(Base):
    """ε reserved for (then spent by) one job on one partner in one year."""

    __tablename__ = "budget_charges"

    job_id: Mapped[str] = mapped_column(_ID, ForeignKey("jobs.id"), primary_key=True)
    partner_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    epsilon: Mapped[float] = mapped_column(Float)
    charged_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # None while the reservation is live; ``coordinator.budget_recovery.Settlement`` after the job.
    settlement: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(_ID, ForeignKey("jobs.id"), index=True)
    task: Mapped[str] = mapped_column(String(64))
    card: Mapped[dict[str, object]] = mapped_column(JSON)
    artefact_sha256: Mapped[str] = mapped_column(String(64))
    artefact_size: Mapped[int] = mapped_column(Integer)
    artefact: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    published_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AgreementRow(Base):
    """A points-interchange agreement as drafted: its canonical document, keyed by content hash."""

    __tablename__ = "interchange_agreements"

    agreement_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(_ID, index=True)
    partner_a: Mapped[str] = mapped_column(_ID, index=True)
    partner_b: Mapped[str] = mapped_column(_ID, index=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    drafted_by: Mapped[str] = mapped_column(_ID)
    drafted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AgreementSignatureRow(Base):
    """One data officer's Ed25519 signature over an agreement hash, stored exactly as signed."""

    __tablename__ = "interchange_agreement_signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agreement_hash: Mapped[str] = mapped_column(
        String(64), ForeignKey("interchange_agreements.agreement_hash")
    )
    partner_id: Mapped[str] = mapped_column(_ID)
    officer: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128), unique=True)
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_by: Mapped[str] = mapped_column(_ID)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SettlementRow(Base):
    """One partner node's settlement totals for an agreement and period (totals only, no transfers)."""

    __tablename__ = "points_settlements"
    __table_args__ = (UniqueConstraint("agreement_id", "period_start", "period_end", "reporter"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agreement_id: Mapped[str] = mapped_column(_ID, index=True)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime)
    reporter: Mapped[str] = mapped_column(_ID)
    peer: Mapped[str] = mapped_column(_ID)
    currency: Mapped[str] = mapped_column(String(3))
    directions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    payer: Mapped[str | None] = mapped_column(_ID, nullable=True)
    payee: Mapped[str | None] = mapped_column(_ID, nullable=True)
    net_amount: Mapped[str] = mapped_column(String(40))
    reconciled: Mapped[bool] = mapped_column(Boolean)
    # reported (the peer has not reported yet) | matched | mismatch
    status: Mapped[str] = mapped_column(String(16))
    differences: Mapped[list[str]] = mapped_column(JSON)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PsiRunRow(Base):
    """A node's summary of one PSI run it took part in: counts and status only."""

    __tablename__ = "psi_runs"
    __table_args__ = (UniqueConstraint("partner_id", "session_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(_ID, index=True)
    session_id: Mapped[str] = mapped_column(_ID)
    psi_role: Mapped[str] = mapped_column(String(16))
    peer: Mapped[str] = mapped_column(_ID)
    purpose: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(32))
    own_set_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    peer_set_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result_cardinality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    refusal: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SubjectRequestRow(Base):
    """A data-subject request (erasure, access) as its node reports it: a random request id, kind
    and dates only, never the member it concerns."""

    __tablename__ = "subject_requests"
    __table_args__ = (UniqueConstraint("partner_id", "request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(_ID, index=True)
    request_id: Mapped[str] = mapped_column(_ID)
    kind: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16))
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ConsentCountRow(Base):
    """A node's coarsened count of members consenting to one purpose (latest report wins)."""

    __tablename__ = "consent_counts"
    __table_args__ = (UniqueConstraint("partner_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(_ID, index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    members: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: fewer than k
    granularity: Mapped[int] = mapped_column(Integer)
    counted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)
