"""Request and reply models of the coordinator API (``XCreate`` in, ``XPublic`` out).

Split from the table models of ``coordinator.store.tables``: a reply never exposes a column by
accident (token digests, artefact bytes). Requests are strict (``extra="forbid"``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audit.head_exchange import HeadReport
from coordinator.platform.interchange_agreements import AgreementStatus
from coordinator.platform.nodes import AuditResetReason
from coordinator.platform.organisations import OrganisationKind
from coordinator.platform.points_settlements import SettlementDirection, SettlementStatus, SettlementTotals
from coordinator.platform.psi_runs import PsiRunSummary
from policies.roles import Role

_IN = ConfigDict(extra="forbid", frozen=True)
Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"
    superlink: Literal["running", "stopped"]
    version: str


class MePublic(BaseModel):
    name: str
    role: Role
    organisation: str


class OrganisationCreate(BaseModel):
    model_config = _IN
    id: Id
    name: str = Field(min_length=1, max_length=200)
    kind: OrganisationKind
    region: str = Field(pattern=r"^[A-Z]{2}$")


class OrganisationPublic(BaseModel):
    id: str
    name: str
    kind: OrganisationKind
    region: str


class TokenCreate(BaseModel):
    model_config = _IN
    name: str = Field(min_length=1, max_length=64)
    role: Role
    organisation: str = Field(min_length=1, max_length=64)


class TokenIssued(BaseModel):
    token: str
    name: str
    role: Role
    organisation: str


class OfficerKeyCreate(BaseModel):
    model_config = _IN
    public_key_b64: str = Field(min_length=40, max_length=64)


class OfficerKeyPublic(BaseModel):
    public_key_b64: str
    organisation: str
    registered_at: datetime


class NodeRegister(BaseModel):
    model_config = _IN
    partner_id: Id
    version: str = Field(min_length=1, max_length=64)
    api_url: str = Field(min_length=1, max_length=500)
    tls_certificate_pem: str = Field(min_length=1, max_length=20_000)
    supernode_public_key_pem: str = Field(min_length=1, max_length=5_000)


class NodeRegistered(BaseModel):
    superlink_address: str
    superlink_root_certificate_pem: str


class AuditResetCreate(BaseModel):
    model_config = _IN
    reason: AuditResetReason


class AuditResetPublic(BaseModel):
    """What was forgotten: the newest head kept of the node's log (all None if none was kept)."""

    partner_id: str
    reason: AuditResetReason
    forgotten_tree_size: int | None
    forgotten_root_hash: str | None
    forgotten_log_id: str | None


class PrivacySpentReport(BaseModel):
    """What the node's own accountant charged to one ended job (``protocol.PrivacySpentReply``)."""

    model_config = _IN
    job_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    epsilon: float = Field(ge=0.0, le=1000.0, allow_inf_nan=False)
    delta: float = Field(ge=0.0, lt=1.0, allow_inf_nan=False)
    steps: int = Field(ge=0, le=2**62)


class HeartbeatCreate(BaseModel):
    model_config = _IN
    version: str = Field(min_length=1, max_length=64)
    # The node's audit log head, with a proof from the size this coordinator last answered.
    audit_head: HeadReport | None = None
    # The size of this coordinator's log head the node last accepted (a proof from it is answered).
    coordinator_tree_size: int | None = Field(default=None, ge=0, le=2**62)
    # Its accountant's figures for the jobs the last answer asked about (``settle_jobs``).
    privacy_spent: list[PrivacySpentReport] = Field(default_factory=list, max_length=1000)


class SettleJobPublic(BaseModel):
    """An ended job whose reservation on the node's partner is held until the node reports."""

    job_id: str
    purpose: str


class HeartbeatAnswer(BaseModel):
    audit_tree_size: int | None
    coordinator_head: HeadReport | None
    settle_jobs: list[SettleJobPublic] = Field(default_factory=list)


class NodePublic(BaseModel):
    partner_id: str
    version: str
    api_url: str
    online: bool
    last_heartbeat: datetime | None
    registered_at: datetime


class TableSummary(BaseModel):
    model_config = _IN
    columns: list[Annotated[str, Field(max_length=128)]] = Field(max_length=500)
    rows_rounded: int = Field(ge=0)


class DatasetCreate(BaseModel):
    model_config = _IN
    partner_id: Id
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    tables: dict[Annotated[str, Field(max_length=64)], TableSummary] = Field(max_length=50)


class DatasetPublic(BaseModel):
    partner_id: str
    name: str
    tables: dict[str, TableSummary]
    registered_at: datetime


class PolicyCreate(BaseModel):
    model_config = _IN
    document: dict[str, Any]


class PolicyVersionPublic(BaseModel):
    policy_id: str
    version: int
    hash: str
    drafted_at: datetime
    partners: list[str]
    approvals: dict[str, str]
    document: dict[str, Any] | None = None
    versions: list[PolicyVersionPublic] | None = None


class FieldChangePublic(BaseModel):
    path: str
    before: Any
    after: Any


class PolicyDiffPublic(BaseModel):
    policy_id: str
    from_version: int
    to_version: int
    changes: list[FieldChangePublic]


class DecisionCreate(BaseModel):
    model_config = _IN
    statement: str = Field(max_length=2_000)
    signature: str = Field(max_length=200)
    reason: str = Field(default="", max_length=500)


class DecisionPublic(BaseModel):
    partner_id: str
    decision: str
    signed_at: datetime
    statement: str
    signature: str
    reason: str


class JobCreated(BaseModel):
    job_id: str
    state: str


class RoundPublic(BaseModel):
    round: int
    nodes_answered: int
    epsilon_spent: float
    metrics: dict[str, float]


class RefusalPublic(BaseModel):
    partner_id: str
    reason: str


class JobPublic(BaseModel):
    job_id: str
    state: str
    task: str
    policy_id: str
    policy_version: int
    policy_hash: str
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None
    model_id: str | None
    spec: dict[str, Any] | None = None
    rounds: list[RoundPublic] = []
    refusals: list[RefusalPublic] = []


class LogLinePublic(BaseModel):
    seq: int
    time: datetime
    level: str
    message: str


class ProgressCreate(BaseModel):
    model_config = _IN
    round: int = Field(ge=0, le=100_000)
    nodes_answered: int = Field(ge=0, le=10_000)
    epsilon_spent: float = Field(ge=0)
    metrics: dict[Annotated[str, Field(max_length=64)], float] = Field(default_factory=dict, max_length=200)


class EventCreate(BaseModel):
    model_config = _IN
    kind: Literal["refusal", "log", "outcome", "settlement"]
    partner_id: Id | None = None
    # settlement: the ε the partner's own node accountant charged to the job (cumulative).
    epsilon: float | None = Field(default=None, ge=0.0, le=1_000.0, allow_inf_nan=False)
    reason: str | None = Field(default=None, max_length=1_000)
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str | None = Field(default=None, max_length=2_000)
    state: Literal["finished", "failed"] | None = None


class BudgetSet(BaseModel):
    model_config = _IN
    epsilon_cap: float = Field(gt=0, le=100)


class BudgetPublic(BaseModel):
    partner_id: str
    year: int
    epsilon_cap: float
    epsilon_reserved: float
    epsilon_remaining: float
    # Of the reserved: ended jobs' reservations held until their node's accountant reports.
    epsilon_held: float = 0.0


class ModelCreate(BaseModel):
    model_config = _IN
    job_id: str = Field(max_length=64)
    card: dict[str, Any]
    weights_b64: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class ModelPublic(BaseModel):
    model_id: str
    job_id: str
    task: str
    artefact_sha256: str
    artefact_size: int
    published_at: datetime
    card: dict[str, Any] | None = None


# Points interchange and PSI reports. Request bodies of the nodes are the domain's own strict
# models (``SettlementTotals``, ``PsiRunSummary``): what a node may send is defined once.
SettlementCreate = SettlementTotals
PsiRunCreate = PsiRunSummary


class AgreementCreate(BaseModel):
    model_config = _IN
    agreement: dict[str, Any]


class AgreementSignatureCreate(BaseModel):
    model_config = _IN
    partner: Id
    officer: str = Field(min_length=1, max_length=128)
    agreement_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")
    signed_at: datetime


class AgreementSignaturePublic(BaseModel):
    partner: str
    officer: str
    public_key: str
    signature: str
    signed_at: datetime
    verified: bool


class AgreementPublic(BaseModel):
    agreement_hash: str
    agreement_id: str
    partners: list[str]
    status: AgreementStatus
    signed_by: list[str]
    awaiting: list[str]
    valid_from: datetime
    valid_until: datetime
    currency: str
    drafted_at: datetime
    document: dict[str, Any] | None = None
    signatures: list[AgreementSignaturePublic] | None = None


class SettlementPublic(BaseModel):
    agreement_id: str
    period_start: datetime
    period_end: datetime
    reporter: str
    peer: str
    currency: str
    directions: list[SettlementDirection]
    payer: str | None
    payee: str | None
    net_amount: str
    reconciled: bool
    status: SettlementStatus
    differences: list[str]
    reported_at: datetime


class PsiRunPublic(BaseModel):
    partner_id: str
    session_id: str
    psi_role: str
    peer: str
    purpose: str
    mode: str
    own_set_size: int | None
    peer_set_size: int | None
    result_cardinality: int | None
    status: str
    refusal: str | None
    ran_at: datetime
    reported_at: datetime


class SubjectRequestPublic(BaseModel):
    """A data-subject request as a node reported it (no member), and whether it is overdue now."""

    partner_id: str
    request_id: str
    kind: str
    received_at: datetime
    deadline: datetime
    status: str
    completed_at: datetime | None
    reported_at: datetime
    overdue: bool


class SubjectRequestsAccepted(BaseModel):
    received: int
    changed: int


class ConsentCountPublic(BaseModel):
    """Members consenting to ``purpose`` at ``partner_id``, rounded down to ``granularity``; null
    when fewer than the node's minimum group size."""

    partner_id: str
    purpose: str
    members: int | None
    granularity: int
    counted_at: datetime
    reported_at: datetime
