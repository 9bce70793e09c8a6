"""The lineage event: one validated, versioned, identifier-free record of a step in a flow.

Validation happens at construction (pydantic, frozen, ``extra="forbid"``), in the spirit of the
OpenLineage client: a malformed event cannot exist, so it cannot reach the log. Canonical bytes
(sorted keys, no spaces, UTF-8) are what the Merkle tree commits to.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from audit.errors import EventRejectedError
from audit.identifier_guard import identifier_problem

__all__ = [
    "SCHEMA_VERSION",
    "ArtefactRef",
    "DatasetRef",
    "EventRejectedError",
    "EventType",
    "LineageEvent",
    "Role",
    "TransferRef",
]

SCHEMA_VERSION = "1.0"


class EventType(StrEnum):
    """Every step of DESIGN.md's flows that leaves a trace in the log."""

    NODE_REGISTERED = "node.registered"
    # A partner's data officer vouched that its node's audit log was lost or restored: the
    # coordinator forgets the head it kept (RFC 9162 §8.3 would refuse the new log forever).
    NODE_AUDIT_RESET = "node.audit_reset"
    POLICY_DRAFTED = "policy.drafted"
    POLICY_APPROVED = "policy.approved"
    POLICY_REJECTED = "policy.rejected"
    CONSENT_IMPORTED = "consent.imported"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    CONSENT_ERASED = "consent.erased"
    PSI_RUN = "psi.run"
    PSI_CACHE_EPOCH = "psi.cache_epoch"
    JOB_STARTED = "job.started"
    JOB_ROUND = "job.round"
    JOB_FINISHED = "job.finished"
    JOB_REFUSED = "job.refused"
    BUDGET_RESERVED = "budget.reserved"
    BUDGET_CHARGED = "budget.charged"
    MODEL_PUBLISHED = "model.published"
    # The retail plans' fairness rule: a gap above 15 points between demographic groups, clear of
    # the groups' noise, on a published model's card (one event per attribute).
    MODEL_FAIRNESS_ALARM = "model.fairness_alarm"
    MODEL_SCORED = "model.scored"
    POINTS_SETTLED = "points.settled"
    POINTS_LINKED = "points.linked"
    POINTS_RESERVED = "points.reserved"
    POINTS_POSTED = "points.posted"
    POINTS_VOIDED = "points.voided"
    DSR_HANDLED = "dsr.handled"
    # The coordinator service's control-plane changes.
    ORGANISATION_REGISTERED = "organisation.registered"
    CREDENTIAL_ISSUED = "credential.issued"
    OFFICER_KEY_REGISTERED = "officer_key.registered"
    DATASET_REGISTERED = "dataset.registered"
    JOB_SUBMITTED = "job.submitted"
    JOB_QUEUED = "job.queued"
    JOB_STOPPED = "job.stopped"
    JOB_FAILED = "job.failed"
    BUDGET_SET = "budget.set"
    # A party showed a tree head inconsistent with the newest one seen of its log (RFC 9162 §8.3).
    AUDIT_ALARM = "audit.alarm"
    # Points interchange and PSI as the coordinator sees them: agreements, totals, counts.
    AGREEMENT_DRAFTED = "points.agreement_drafted"
    AGREEMENT_SIGNED = "points.agreement_signed"
    SETTLEMENT_REPORTED = "points.settlement_reported"
    SETTLEMENT_MISMATCH = "points.settlement_mismatch"
    PSI_RUN_REPORTED = "psi.run_reported"
    # A node's data-subject request (erasure, access) as the coordinator learnt it: id, kind, status.
    DSR_REPORTED = "dsr.reported"
    # Identities: a key pair made where it is used (public half by hash), a certificate signed by the CA.
    KEY_CREATED = "pki.key_created"
    CERTIFICATE_ISSUED = "pki.certificate_issued"


class Role(StrEnum):
    """Canonical roles (DESIGN.md "Who uses it"); other lower-case role names are accepted."""

    NODE = "node"
    PARTNER_ORGANISATION = "partner_organisation"
    COORDINATOR = "coordinator"
    DATA_OFFICER = "data_officer"
    ANALYST = "analyst"
    AUDITOR = "auditor"
    SYSTEM = "system"


def _no_identifier(value: str) -> str:
    problem = identifier_problem(value)
    if problem:
        raise ValueError(f"refused: value {problem}; member identifiers never enter the audit log")
    return value


# Names of people/services, partners, datasets: short, printable, and never identifier-shaped.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:/@()-]*$"),
    AfterValidator(_no_identifier),
]
# Coordinator-minted ids: a UUID, a hex token with at least one letter, or a hex token behind a word
# prefix ("job-3f9a0c12b7de", "model:0042aa17"). Member ids are decimal behind short prefixes
# (FM-0004711), and a bare run of digits could be a phone number: both get the full identifier check.
_UUID = re.compile(r"^(?:[a-z]+[-_:])?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIXED_HEX = re.compile(r"^(?!(?:member|mbr|household|cust|customer)[-_:])[a-z]{3,}[-_:][0-9a-f]{8,128}$")
_HEX_WITH_LETTER = re.compile(r"^(?=[0-9]*[a-f])[0-9a-f]{8,128}$")


def _no_identifier_in_run_id(value: str) -> str:
    if _UUID.match(value) or _PREFIXED_HEX.match(value) or _HEX_WITH_LETTER.match(value):
        return value
    return _no_identifier(value)


# Job and model ids are minted by the coordinator (UUIDs, slugs).
RunId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
    AfterValidator(_no_identifier_in_run_id),
]
Digest = Annotated[str, StringConstraints(pattern=r"^(sha256:)?[0-9a-f]{16,128}$")]
Purpose = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$"), AfterValidator(_no_identifier)]
# Enum-like detail values ("store_group", "cardinality"): lower-case tokens, never identifier-shaped.
Token = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$"), AfterValidator(_no_identifier)]


class DatasetRef(BaseModel):
    """An input dataset: whose, and a fingerprint of its content (never the content)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partner: Name
    fingerprint: Digest
    name: Name | None = None


class ArtefactRef(BaseModel):
    """An output artefact (model weights, model card, report) by name and SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    sha256: Digest


# Transfers one event may record: a points node records the transfers of one transaction together.
MAX_TRANSFERS_PER_EVENT = 10_000


class TransferRef(BaseModel):
    """One points transfer in an event recording a batch of them: its id, a one-way hash of the
    member's pairwise link token (never the token, never a member id) and its amounts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transfer_id: RunId
    link_token_hash: Digest | None = None
    points: Annotated[StrictInt, Field(ge=0)]
    credited: Annotated[StrictInt, Field(ge=0)]
    fee: Annotated[StrictInt, Field(ge=0)] | None = None


class LineageEvent(BaseModel):
    """One step of a flow: who did what, when, under which purpose, policy and consent snapshot.

    ``details`` holds counts (numbers keyed by short snake_case names) and enum-like tokens
    such as a partner kind, never free text; ``partners`` and
    ``categories`` list the partners and data categories a step involves (for a policy event,
    the ones it allows).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = SCHEMA_VERSION
    event_type: EventType
    time: datetime
    actor: Name
    role: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{1,31}$")]
    partner: Name | None = None
    purpose: Purpose | None = None
    policy_hash: Digest | None = None
    consent_snapshot_hash: Digest | None = None
    job_id: RunId | None = None
    model_id: RunId | None = None
    inputs: tuple[DatasetRef, ...] = ()
    outputs: tuple[ArtefactRef, ...] = ()
    partners: tuple[Name, ...] = ()
    categories: tuple[Key, ...] = ()
    # Finite only: JSON has no NaN or Infinity, and the canonical bytes must round-trip.
    epsilon: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    delta: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)] | None = None
    # Strict numbers: a lax int would happily turn the string "+8613…" into a count.
    details: dict[Key, StrictInt | StrictFloat | Token] = Field(default_factory=dict)
    # Points interchange: the transfer and a one-way hash of the member's pairwise link token.
    transfer_id: RunId | None = None
    link_token_hash: Digest | None = None
    # ... or the transfers of one step taken together (each still found by its id: names_transfer).
    # Last and omitted when None, so events without it keep the canonical bytes they always had.
    transfers: (
        Annotated[tuple[TransferRef, ...], Field(min_length=1, max_length=MAX_TRANSFERS_PER_EVENT)] | None
    ) = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value != SCHEMA_VERSION:
            raise ValueError(f"schema_version must be {SCHEMA_VERSION!r}, got {value!r}")
        return value

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must be timezone-aware (UTC)")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("time is outside the range of UTC datetimes") from None

    @field_validator("role", mode="before")
    @classmethod
    def _normalise_role(cls, value: object) -> object:
        # "partner organisation" (DESIGN.md's wording) and "partner_organisation" are one role.
        return value.strip().lower().replace(" ", "_").replace("-", "_") if isinstance(value, str) else value

    @field_validator("details")
    @classmethod
    def _finite_counts(cls, value: dict[str, int | float | str]) -> dict[str, int | float | str]:
        for key, item in value.items():
            if isinstance(item, bool) or (isinstance(item, float) and not math.isfinite(item)):
                raise ValueError(f"details[{key!r}] must be a finite number or a short token")
        return value

    @model_validator(mode="after")
    def _one_transfer_or_a_batch(self) -> LineageEvent:
        if self.transfers is None:
            return self
        if self.transfer_id is not None or self.link_token_hash is not None:
            raise ValueError("an event names one transfer (transfer_id) or a batch (transfers), not both")
        if len({t.transfer_id for t in self.transfers}) != len(self.transfers):
            raise ValueError("transfers must name each transfer once")
        return self

    def transfer_ids(self) -> tuple[str, ...]:
        """The points transfers this event records (none, its ``transfer_id``, or its batch's)."""
        if self.transfers is not None:
            return tuple(t.transfer_id for t in self.transfers)
        return () if self.transfer_id is None else (self.transfer_id,)

    def names_transfer(self, transfer_id: str) -> bool:
        return transfer_id in self.transfer_ids()

    def canonical_bytes(self) -> bytes:
        """The bytes the log commits to: compact UTF-8 JSON in field order, ``None`` omitted.

        Field order is fixed per ``schema_version``, so the encoding is deterministic; the log
        stores these exact bytes and verification hashes them as stored, never re-serialised.
        """
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)

    def partner_names(self) -> set[str]:
        """Every partner the event names: its own, its inputs' and its ``partners`` list."""
        names = {ref.partner for ref in self.inputs} | set(self.partners)
        if self.partner:
            names.add(self.partner)
        return names

    @classmethod
    def from_record(
        cls, record: dict[str, Any], *, now: datetime, actor: str = "loyalfed", role: str = Role.SYSTEM
    ) -> LineageEvent:
        """Validate a plain lineage record (as the demo and services emit them).

        ``time``, ``actor`` and ``role`` default to ``now`` and the given values. Validation
        errors are re-raised without the offending values, which may be member identifiers.
        """
        data = {"time": now, "actor": actor, "role": str(role)} | record
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            where = "; ".join(f"{_safe_location(e['loc'])}: {e['msg']}" for e in err.errors())
            raise EventRejectedError(
                f"lineage event {record.get('event_type')!r} refused ({where})"
            ) from None

    @classmethod
    def from_canonical(cls, data: bytes) -> LineageEvent:
        """Parse (and re-validate) an event read back from the log."""
        return cls.model_validate_json(data)


def _safe_location(loc: tuple[int | str, ...]) -> str:
    """A validation error's location with caller-chosen parts (dict keys, unknown fields) masked:
    those are data, and may be the very identifier being refused."""
    known = {
        *LineageEvent.model_fields,
        *DatasetRef.model_fields,
        *ArtefactRef.model_fields,
        *TransferRef.model_fields,
        "[key]",
    }
    return ".".join(str(part) if isinstance(part, int) or part in known else "<field>" for part in loc)
