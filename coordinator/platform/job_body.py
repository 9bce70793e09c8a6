"""The body of ``POST /jobs``: the one place the control plane reads a job specification.

The job engine's ``protocol.JobSpec`` is the shared, versioned definition; until it is importable
the coordinator validates the few fields it acts on (task, policy reference, ε/δ, rounds) here and
keeps the whole body to hand to the ServerApp untouched. Swapping to ``protocol.JobSpec`` is an
edit of this module only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coordinator.platform.errors import InvalidRequestError

__all__ = ["JobBody", "parse_job_body"]

_ID = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class JobBody(BaseModel):
    """What the coordinator checks before a job may start; other fields travel to the ServerApp."""

    model_config = ConfigDict(frozen=True, extra="allow")

    task: str = Field(pattern=r"^[a-z][a-z_]{0,31}$")
    policy_id: str = Field(pattern=_ID)
    policy_version: int | None = Field(default=None, ge=1)
    epsilon: float = Field(gt=0, le=50)
    delta: float = Field(gt=0, lt=1)
    rounds: int = Field(default=3, ge=1, le=1000)


def parse_job_body(data: Any) -> JobBody:
    """Validate a submitted job; the error names fields and rules, never submitted values."""
    try:
        return JobBody.model_validate(data)
    except ValidationError as err:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors())
        raise InvalidRequestError(f"invalid job specification ({where})") from None
