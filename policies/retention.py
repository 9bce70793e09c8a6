"""Retention: member data older than the policy's limit is kept out of analytics.

PIPL Art. 19: retention is the shortest period necessary for the purpose; GDPR Art. 5(1)(e):
storage limitation. The default limit is 3 years (``DEFAULT_RETENTION_DAYS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from policies.jurisdiction import DEFAULT_RETENTION_DAYS

__all__ = ["RetentionResult", "apply_retention", "retention_cutoff"]


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
