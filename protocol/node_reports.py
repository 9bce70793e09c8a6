"""What a node reports to its coordinator beside its heartbeat: one typed, versioned definition.

* Data-subject requests (erasure, access): a random request id the node made (``erasure-…``,
  ``access-…``), the kind, when it was received, its deadline, its status and when it was
  completed — never the member it concerns, nor any row count of their data. The id's shape is
  checked, so no identifier can ride in it.
* Consent counts: per purpose, how many members consent to it, coarsened to ``granularity`` and
  withheld (``None``) below ``k`` members, so no report singles out a member (the k-member rule of
  what leaves a node; the count of a small group moves with one member's choice).
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audit.identifier_guard import identifier_problem

__all__ = [
    "CONSENT_COUNT_GRANULARITY",
    "CONSENT_COUNT_MIN_MEMBERS",
    "NODE_REPORT_VERSION",
    "ConsentCount",
    "ConsentCountReport",
    "SubjectRequestBatch",
    "SubjectRequestKind",
    "SubjectRequestReport",
    "SubjectRequestStatus",
    "coarsen_count",
]

NODE_REPORT_VERSION = 1
CONSENT_COUNT_GRANULARITY = 10
CONSENT_COUNT_MIN_MEMBERS = 20  # DESIGN.md: aggregates leave a node over at least k = 20 members
_FROZEN = ConfigDict(frozen=True, extra="forbid")
Purpose = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]


class SubjectRequestKind(StrEnum):
    ERASURE = "erasure"  # PIPL Art. 47, GDPR Art. 17
    ACCESS = "access"  # PIPL Art. 45, GDPR Art. 15 and 20


class SubjectRequestStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"


def _aware(value: datetime | None, name: str) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must carry a UTC offset")


class SubjectRequestReport(BaseModel):
    """One request as the node reports it: dates and status, no identifier."""

    model_config = _FROZEN
    # The node's own random id (uuid4 hex): the kind, a dash, 12 to 32 hex digits, and no run of
    # digits that could be a phone number or member id (the audit log's identifier guard).
    request_id: Annotated[str, Field(pattern=r"^(erasure|access)-[0-9a-f]{12,32}$")]
    kind: SubjectRequestKind
    received_at: datetime
    deadline: datetime
    status: SubjectRequestStatus
    completed_at: datetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SubjectRequestReport:
        for name in ("received_at", "deadline", "completed_at"):
            _aware(getattr(self, name), name)
        if identifier_problem(self.request_id) is not None:
            raise ValueError("request_id must be the node's random id, and it looks like an identifier")
        if not self.request_id.startswith(f"{self.kind.value}-"):
            raise ValueError(f"request_id {self.request_id} does not name a {self.kind.value} request")
        if self.deadline < self.received_at:
            raise ValueError("deadline is before received_at")
        if (self.status is SubjectRequestStatus.COMPLETED) != (self.completed_at is not None):
            raise ValueError("completed_at is set exactly when status is completed")
        if self.completed_at is not None and self.completed_at < self.received_at:
            raise ValueError("completed_at is before received_at")
        return self


class SubjectRequestBatch(BaseModel):
    """Every request the node holds (the coordinator keeps the newest status of each)."""

    model_config = _FROZEN
    version: Literal[1] = 1
    requests: Annotated[list[SubjectRequestReport], Field(max_length=10_000)]


class ConsentCount(BaseModel):
    model_config = _FROZEN
    purpose: Purpose
    members: Annotated[int, Field(ge=0, le=10**10)] | None  # None: fewer than ``k`` members


class ConsentCountReport(BaseModel):
    """Consented members per purpose, coarsened, as counted by the node at ``counted_at``."""

    model_config = _FROZEN
    version: Literal[1] = 1
    counted_at: datetime
    granularity: Annotated[int, Field(ge=1, le=10_000)] = CONSENT_COUNT_GRANULARITY
    k: Annotated[int, Field(ge=1, le=10_000)] = CONSENT_COUNT_MIN_MEMBERS
    counts: Annotated[list[ConsentCount], Field(max_length=64)]

    @field_validator("counted_at")
    @classmethod
    def _aware_time(cls, value: datetime) -> datetime:
        _aware(value, "counted_at")
        return value

    @model_validator(mode="after")
    def _coarse(self) -> ConsentCountReport:
        purposes = [c.purpose for c in self.counts]
        if len(set(purposes)) != len(purposes):
            raise ValueError("each purpose is counted once")
        for count in self.counts:
            if count.members is not None and (count.members % self.granularity or count.members < self.k):
                raise ValueError(
                    f"{count.purpose}: a count is a multiple of {self.granularity} and at least "
                    f"{self.k}, or null (fewer than {self.k} members)"
                )
        return self


def coarsen_count(
    members: int, *, granularity: int = CONSENT_COUNT_GRANULARITY, k: int = CONSENT_COUNT_MIN_MEMBERS
) -> int | None:
    """``members`` rounded down to ``granularity`` (never shown larger than it is), or None below ``k``.

    Rounding down, then requiring the result to reach ``k``, keeps a reported count both coarse and
    an under-statement: 27 members with k = 20 and granularity 10 is 20; 19 is withheld.
    """
    if members < 0:
        raise ValueError(f"a member count is not negative, got {members}")
    shown = math.floor(members / granularity) * granularity
    return shown if shown >= k else None
