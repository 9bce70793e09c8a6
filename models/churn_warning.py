"""Churn warning bands: the model's score combined with the loyalty programme's own rules.

The programme's rules are dates, not probabilities: a member with no purchase for 30 days gets a
warning, one with none for 90 days has lapsed. The model adds who is slipping BEFORE those dates.
Bands, from the most to the least urgent (the first rule that matches wins):

=========  =================================================================================
lapsed     no purchase for ``lapsed_days`` (90) or more: the programme's lapse rule
at_risk    score at or above ``at_risk_score``, or no purchase for ``warning_days`` (30) with a
           score at or above ``watch_score``
watch      score at or above ``watch_score``, or no purchase for ``warning_days``
low        everything else
=========  =================================================================================

Default score cuts come from the held-out base rate b the model card reports: ``watch`` at b (the
member is likelier than average to churn), ``at_risk`` at 2b capped at (1 + b) / 2 (twice as
likely, and never above the point halfway to certainty). They are public numbers of the model,
not of any member. The bands are computed at a node for its own members and never pooled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

import numpy as np
import pandas as pd

from models.frame_contract import NS_PER_DAY, as_timestamp, require_columns, to_ns

__all__ = [
    "LAPSED_DAYS",
    "WARNING_DAYS",
    "WarningBand",
    "WarningPolicy",
    "days_since_last_purchase",
    "warning_bands",
]

WARNING_DAYS = 30  # the programme's rule: 30 days without a purchase -> warning
LAPSED_DAYS = 90  # the programme's rule: 90 days without a purchase -> lapsed


class WarningBand(StrEnum):
    LOW = "low"
    WATCH = "watch"
    AT_RISK = "at_risk"
    LAPSED = "lapsed"


@dataclass(frozen=True)
class WarningPolicy:
    """Score cuts and the programme's day rules."""

    watch_score: float
    at_risk_score: float
    warning_days: int = WARNING_DAYS
    lapsed_days: int = LAPSED_DAYS

    def __post_init__(self) -> None:
        if not 0.0 <= self.watch_score <= self.at_risk_score <= 1.0:
            raise ValueError(
                f"need 0 <= watch_score <= at_risk_score <= 1, got {self.watch_score}, {self.at_risk_score}"
            )
        if not 0 < self.warning_days < self.lapsed_days:
            raise ValueError(
                f"need 0 < warning_days < lapsed_days, got {self.warning_days}, {self.lapsed_days}"
            )

    @classmethod
    def from_base_rate(cls, base_rate: float) -> WarningPolicy:
        """The default cuts for a model whose held-out base rate is ``base_rate`` (module docstring)."""
        if not 0.0 < base_rate < 1.0:
            raise ValueError(f"base_rate must be in (0, 1), got {base_rate}")
        return cls(watch_score=base_rate, at_risk_score=min(2.0 * base_rate, (1.0 + base_rate) / 2.0))


def warning_bands(
    scores: np.ndarray, days_since_last_purchase: np.ndarray, policy: WarningPolicy
) -> np.ndarray:
    """The band of each member (an object array of `WarningBand` values).

    ``days_since_last_purchase`` may be ``inf`` for a member who never bought: such a member is
    lapsed. NaN scores (a member the model could not score) are treated as 0: the date rules still
    apply.
    """
    p = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    days = np.asarray(days_since_last_purchase, dtype=np.float64)
    if p.shape != days.shape:
        raise ValueError(f"scores and days differ in length: {p.shape} vs {days.shape}")
    warned = days >= policy.warning_days
    conditions = [
        days >= policy.lapsed_days,
        (p >= policy.at_risk_score) | (warned & (p >= policy.watch_score)),
        (p >= policy.watch_score) | warned,
    ]
    choices = [WarningBand.LAPSED.value, WarningBand.AT_RISK.value, WarningBand.WATCH.value]
    return np.select(conditions, choices, default=WarningBand.LOW.value).astype(object)


def days_since_last_purchase(
    member_ids: Sequence[str] | np.ndarray,
    transactions: pd.DataFrame,
    *,
    as_of: datetime | date | str | pd.Timestamp,
) -> np.ndarray:
    """Days from each member's last purchase strictly before ``as_of`` to ``as_of`` (inf: none)."""
    require_columns(transactions, ("member_id", "timestamp"), frame_name="transactions")
    end = as_timestamp(as_of).as_unit("ns").value
    ts = to_ns(transactions["timestamp"])
    before = ts < end
    last = pd.Series(ts[before]).groupby(transactions["member_id"].astype(str).to_numpy()[before]).max()
    index = pd.Index([str(m) for m in member_ids])
    latest = last.reindex(index).to_numpy(dtype=np.float64)
    return np.where(np.isnan(latest), np.inf, (end - latest) / NS_PER_DAY)
