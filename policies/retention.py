"""Retention and erasure: how long member data may be used, and how soon an erasure must be done.

PIPL Art. 19: retention is the shortest period necessary for the purpose; GDPR Art. 5(1)(e):
storage limitation. The default limit is 3 years (``DEFAULT_RETENTION_DAYS``). Erasure deadlines
start from the law (``policies.jurisdiction``) and may be shortened per jurisdiction and programme.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.errors import PolicyError
from policies.jurisdiction import (
    DEFAULT_RETENTION_DAYS,
    Jurisdiction,
    legal_erasure_limit,
    legal_erasure_source,
)
from policies.time_limit import TimeLimit

__all__ = [
    "ErasureDeadline",
    "ErasureRules",
    "RetentionResult",
    "apply_retention",
    "load_erasure_rules",
    "retention_cutoff",
]


@dataclass(frozen=True)
class RetentionResult:
    """The rows kept and how many were purged (a count only, for the report)."""

    kept: pd.DataFrame
    purged: int
    cutoff: datetime


def retention_cutoff(now: datetime, days: int = DEFAULT_RETENTION_DAYS) -> datetime:
    """The oldest moment still inside the retention window."""
    if days <= 0:
        raise ValueError(f"retention days must be positive, got {days}")
    return now - timedelta(days=days)


def apply_retention(
    frame: pd.DataFrame, column: str, *, now: datetime, days: int = DEFAULT_RETENTION_DAYS
) -> RetentionResult:
    """Drop rows whose ``column`` is older than ``days`` before ``now`` (missing dates are kept)."""
    cutoff = retention_cutoff(now, days)
    moments = frame[column].to_numpy(dtype="M8[us]")
    old = ~np.isnat(moments) & (moments < np.datetime64(cutoff, "us"))
    return RetentionResult(frame.loc[~old], int(old.sum()), cutoff)


class ErasureRules(BaseModel):
    """When an erasure request must be done: the law's limit, tightened per jurisdiction and programme.

    The law sets the longest allowed time (``policies.jurisdiction.LEGAL_ERASURE_LIMITS``). A node
    may tighten it per jurisdiction (a sector rule, e.g. 15 working days) and per loyalty programme
    (the retailer's own promise to its members, e.g. "within 7 working days"). The deadline is the
    earliest of every applicable limit, so configuration can shorten the law's limit, never extend it.

    ```toml
    programme_promise = "7 working days"
    holidays = [2025-01-01, 2025-10-01]

    [jurisdiction_limits]
    CN = "15 working days"
    ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    programme_promise: str | None = None
    jurisdiction_limits: dict[Jurisdiction, str] = Field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    @field_validator("programme_promise")
    @classmethod
    def _promise_is_a_limit(cls, value: str | None) -> str | None:
        if value is not None:
            TimeLimit.parse(value)
        return value

    @field_validator("jurisdiction_limits")
    @classmethod
    def _limits_are_limits(cls, value: dict[Jurisdiction, str]) -> dict[Jurisdiction, str]:
        for text in value.values():
            TimeLimit.parse(text)
        return value

    def deadline(self, received_at: datetime, jurisdictions: frozenset[Jurisdiction]) -> ErasureDeadline:
        """The binding deadline for a request received at ``received_at`` and which rule sets it."""
        if not jurisdictions:
            raise ValueError("at least one jurisdiction is needed to compute an erasure deadline")
        legal = min(
            (legal_erasure_limit(j).due(received_at), legal_erasure_source(j)) for j in sorted(jurisdictions)
        )
        candidates = [legal]
        for jurisdiction in sorted(jurisdictions):
            if jurisdiction in self.jurisdiction_limits:
                limit = TimeLimit.parse(self.jurisdiction_limits[jurisdiction])
                candidates.append((self._due(limit, received_at), f"jurisdiction.{jurisdiction.lower()}"))
        if self.programme_promise is not None:
            promise = TimeLimit.parse(self.programme_promise)
            candidates.append((self._due(promise, received_at), "programme.promise"))
        due, rule = min(candidates)
        return ErasureDeadline(
            received_at=received_at, due=due, rule=rule, legal_due=legal[0], legal_rule=legal[1]
        )

    def _due(self, limit: TimeLimit, received_at: datetime) -> datetime:
        return limit.due(received_at, holidays=self.holidays)


@dataclass(frozen=True)
class ErasureDeadline:
    """The binding deadline of one request, the rule that set it, and the law's own deadline."""

    received_at: datetime
    due: datetime
    rule: str  # "gdpr.art12.3", "pipl.art47.gbt35273", "jurisdiction.cn", "programme.promise"
    legal_due: datetime
    legal_rule: str


def load_erasure_rules(path: Path) -> ErasureRules:
    """Read a node's erasure rules from TOML; errors name the file and the entry."""
    try:
        return ErasureRules.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"{path}: not valid TOML: {err}") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"{path}: {where}: {first['msg']}") from None
