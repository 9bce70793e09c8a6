"""What two nodes send each other for points interchange: versioned, typed, identifier-free messages.

Transfers are keyed by the client's transfer id and the member's pairwise link token, never by a
member id, phone or email; link sessions carry blinded group elements only; statements carry
totals and a digest of the transfer ids they cover. Every model is frozen with ``extra="forbid"``.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit.identifier_guard import identifier_problem

__all__ = [
    "POINTS_WIRE_VERSION",
    "TRANSFER_ID_PATTERN",
    "DecisionReply",
    "DecisionRequest",
    "ExpirySlice",
    "InboundStatus",
    "LinkAnswer",
    "LinkOpening",
    "LinkReveal",
    "LinkRevealReply",
    "ReserveItem",
    "ReserveReply",
    "ReserveRequest",
    "ResolveAction",
    "ResolveReply",
    "ResolveRequest",
    "SignedStatement",
    "TransferDecision",
    "check_transfer_id",
    "opening_digest",
    "version_refusal",
]

# 2: ReserveItem.expiry (moved points keep their expiry) and LinkAnswer.opening_digest. A node
# refuses a message of any other version, naming both (a peer must not half-read a message).
POINTS_WIRE_VERSION = 2
TRANSFER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_TRANSFER_ID = re.compile(TRANSFER_ID_PATTERN)
# Machine-minted ids (a UUID, a hex token with a letter) may hold digit runs; the audit log's run-id
# rule accepts the same shapes.
_MINTED = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?=[0-9]*[a-f])[0-9a-f]{8,64}"
)
_FROZEN = ConfigDict(frozen=True, extra="forbid")


def version_refusal(version: object) -> str:
    """The refusal a node gives for a message of another wire version (both versions named)."""
    return f"points wire version {version} unsupported (this node: {POINTS_WIRE_VERSION})"


def opening_digest(elements: str) -> str:
    """What a ``LinkAnswer`` names to say which opening it answers."""
    return hashlib.sha256(elements.encode("ascii")).hexdigest()


def check_transfer_id(value: str) -> str:
    """A transfer id crosses to the partner and into the audit log: it must not carry a member identifier."""
    if not _TRANSFER_ID.match(value):
        raise ValueError(f"transfer id must match {TRANSFER_ID_PATTERN}")
    if _MINTED.fullmatch(value):
        # A machine-minted id is accepted whatever the identifier guard would say of its digit
        # runs; asking the guard first (three searches) would cost ten times the check itself.
        return value
    problem = identifier_problem(value)
    if problem:
        raise ValueError(f"transfer id refused: it {problem}")
    return value


class _Message(BaseModel):
    model_config = _FROZEN
    version: int = POINTS_WIRE_VERSION

    @field_validator("version")
    @classmethod
    def _known(cls, value: int) -> int:
        if value != POINTS_WIRE_VERSION:
            raise ValueError(version_refusal(value))
        return value


class InboundStatus(StrEnum):
    RESERVED = "reserved"
    POSTED = "posted"
    VOIDED = "voided"
    REFUSED = "refused"
    CONFLICT = "conflict"  # same transfer id, different fields
    UNKNOWN = "unknown"


class ExpirySlice(BaseModel):
    """``points`` of a credit that expire at ``expires_at_us`` (the source's lots they came from)."""

    model_config = _FROZEN
    points: int = Field(gt=0)
    expires_at_us: int = Field(ge=0)


class ReserveItem(BaseModel):
    model_config = _FROZEN
    transfer_id: str = Field(max_length=64)
    link_token: str = Field(pattern=r"^[0-9a-f]{64}$")
    points: int = Field(gt=0)
    credited: int = Field(gt=0)
    # When the credited points expire: slices summing to ``credited`` (moved points keep their expiry).
    expiry: tuple[ExpirySlice, ...] = Field(default=(), max_length=120)

    _id = field_validator("transfer_id")(classmethod(lambda cls, v: check_transfer_id(v)))


class ReserveRequest(_Message):
    agreement_id: str = Field(max_length=64)
    agreement_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    epoch: int = Field(ge=1)
    items: tuple[ReserveItem, ...] = Field(min_length=1, max_length=5_000)


class ItemResult(BaseModel):
    model_config = _FROZEN
    transfer_id: str
    status: InboundStatus
    reason: str | None = Field(default=None, pattern=r"^[a-z_]{1,48}$")


class ReserveReply(_Message):
    results: tuple[ItemResult, ...]


class ResolveAction(StrEnum):
    POST = "post"
    VOID = "void"


class TransferDecision(BaseModel):
    model_config = _FROZEN
    transfer_id: str = Field(max_length=64)
    decided_at_us: int = Field(ge=0)


class ResolveRequest(_Message):
    action: ResolveAction
    items: tuple[TransferDecision, ...] = Field(min_length=1, max_length=10_000)


class ResolveReply(_Message):
    results: tuple[ItemResult, ...]


class DecisionRequest(_Message):
    transfer_ids: tuple[str, ...] = Field(min_length=1, max_length=10_000)


class DecisionReply(_Message):
    """The source's decision per transfer: posted, voided, reserved (undecided) or unknown."""

    decisions: tuple[ItemResult, ...]
    decided_at_us: tuple[int, ...]


class LinkOpening(_Message):
    agreement_id: str = Field(max_length=64)
    agreement_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    epoch: int = Field(ge=1)
    elements: str  # base64 of a·H(x), 32 bytes each


class LinkAnswer(_Message):
    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    # sha256 of the opening's ``elements``: binds the answer to the opening it answers, so an old
    # answer arriving late in place of a retried opening's is refused, never finished with.
    opening_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    double: str  # base64 of b·a·H(x), the initiator's order
    elements: str  # base64 of b·H(y), shuffled


class LinkReveal(_Message):
    positions: tuple[int, ...]
    elements: str  # base64 of D for each position, in the same order


class LinkRevealReply(_Message):
    linked: int


class SignedStatement(_Message):
    """A node's settlement statement (canonical JSON) and its ECDSA signature by the node's key."""

    statement: str
    signature: str  # hex, DER-encoded ECDSA P-256 / SHA-256 (FIPS 186-5)
