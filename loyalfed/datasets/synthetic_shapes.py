"""Federations of very different shapes from the synthetic generator, to test that models transfer.

A model tuned on one retailer's data must be checked on retailers that look nothing like it. Each
`FederationShape` bends the Complete Journey calibration (`loyalfed.datasets.calibration`) along
one or more axes a real retailer differs on, and fixes the churn task's window inside the data:

- members per node (10^3 / 10^4 / 10^5): how much a node can learn alone, and how much DP noise
  costs per member;
- purchase frequency (a scale on the yearly basket-rate quantiles) and a share of one-off buyers
  (members who make one or two purchases over the whole history);
- the churn base rate (the share of members who stop shopping for good);
- the history length before the labelling date and the label horizon;
- members who join during the history, a share of whom buy once or twice and stop (newcomers);
- the currency (every amount multiplied by an exchange rate: log spend shifts by its logarithm).

Nodes are store groups with disjoint members (no cross-enrolment), like the retailer the product is
first sold to. Everything else (gap burstiness, basket spend spread, campaigns, consents,
demographics) keeps the Complete Journey values.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from loyalfed.datasets.calibration import COMPLETE_JOURNEY_CALIBRATION, Calibration
from loyalfed.datasets.synthetic import SynthConfig

__all__ = ["SHAPES", "FederationShape"]

_LABEL_DAY = date(2017, 9, 1)  # the labelling date of every shape; history runs back from it
_TAIL_DAYS = 30  # data after the horizon ends, so a lapser's stop can fall inside the horizon


class FederationShape(BaseModel):
    """One retailer's shape: how many members per node and how they shop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    members_per_node: int = Field(gt=0)
    nodes: int = Field(default=3, ge=2, le=64)
    frequency_scale: float = Field(default=1.0, gt=0.0)
    one_off_share: float = Field(default=0.0, ge=0.0, lt=1.0)
    lapsing_share: float = Field(default=COMPLETE_JOURNEY_CALIBRATION.lapsing_share, ge=0.0, lt=1.0)
    history_days: int = Field(default=243, ge=28)
    horizon_days: int = Field(default=90, ge=7)
    currency_per_usd: float = Field(default=1.0, gt=0.0)
    newcomer_share: float = Field(default=0.0, ge=0.0, le=1.0)
    newcomer_early_lapse: float = Field(default=0.0, ge=0.0, le=1.0)
    description: str = ""

    @property
    def as_of(self) -> datetime:
        """The churn labelling date: features use only data strictly before it."""
        return datetime.combine(_LABEL_DAY, datetime.min.time())

    @property
    def start(self) -> date:
        return _LABEL_DAY - timedelta(days=self.history_days)

    @property
    def days(self) -> int:
        return self.history_days + self.horizon_days + _TAIL_DAYS

    def synth_config(self, *, seed: int = 7) -> SynthConfig:
        """The generator's configuration: disjoint store groups, chunks sized to the federation."""
        members = self.members_per_node * self.nodes
        return SynthConfig(
            members=members,
            partners=self.nodes,
            seed=seed,
            start=self.start,
            days=self.days,
            chunk_members=max(100, min(20_000, members)),
            cross_enrolled_share=0.0,
            newcomer_share=self.newcomer_share,
            newcomer_early_lapse=self.newcomer_early_lapse,
        )

    def calibration(self, base: Calibration = COMPLETE_JOURNEY_CALIBRATION) -> Calibration:
        """``base`` bent to this shape (see module docstring)."""
        # The generator draws a basket rate per simulated period; the calibration's quantiles are per
        # year, so they are rescaled to the period's length.
        per_period = self.frequency_scale * self.days / 365.0
        quantiles = [q * per_period for q in base.baskets_per_member_quantiles]
        if self.one_off_share > 0:
            quantiles = _with_one_off_buyers(quantiles, self.one_off_share)
        return dataclasses.replace(
            base,
            baskets_per_member_quantiles=tuple(max(q, 0.05) for q in quantiles),
            lapsing_share=self.lapsing_share,
            log_spend_mean=base.log_spend_mean + math.log(self.currency_per_usd),
        )


def _with_one_off_buyers(quantiles: list[float], share: float) -> list[float]:
    """Quantiles where the lowest ``share`` of members expects well under one basket per period.

    The generator gives every member at least one basket, so these members make one purchase, or
    two by chance; the remaining members keep the shape of ``quantiles`` above that.
    """
    levels = [i / (len(quantiles) - 1) for i in range(len(quantiles))]
    out = []
    for level in levels:
        if level <= share:
            out.append(0.05 + 0.45 * level / share)  # Poisson means 0.05 .. 0.5: mostly exactly one basket
        else:
            rest = (level - share) / (1.0 - share)
            position = rest * (len(quantiles) - 1)
            low = math.floor(position)
            high = min(low + 1, len(quantiles) - 1)
            out.append(quantiles[low] + (quantiles[high] - quantiles[low]) * (position - low))
    return out


SHAPES: dict[str, FederationShape] = {
    shape.name: shape
    for shape in (
        FederationShape(
            name="cj-like-1k", members_per_node=1_000, description="Complete Journey's shape, 10^3 per node"
        ),
        FederationShape(
            name="cj-like-10k", members_per_node=10_000, description="Complete Journey's shape, 10^4 per node"
        ),
        FederationShape(
            name="newcomers-10k",
            members_per_node=10_000,
            newcomer_share=0.5,
            newcomer_early_lapse=0.5,
            description="Complete Journey's shopping, but half the members join during the year",
        ),
        FederationShape(
            name="cj-like-100k",
            members_per_node=100_000,
            description="Complete Journey's shape, 10^5 per node",
        ),
        FederationShape(
            name="high-churn-10k",
            members_per_node=10_000,
            lapsing_share=0.35,
            newcomer_share=0.3,
            newcomer_early_lapse=0.5,
            description="a third of members stop for good; newcomers, half of them one-and-done",
        ),
        FederationShape(
            name="infrequent-10k",
            members_per_node=10_000,
            frequency_scale=0.08,
            horizon_days=180,
            newcomer_share=0.3,
            newcomer_early_lapse=0.3,
            description="a few purchases a year (fuel, pharmacy), six-month horizon",
        ),
        FederationShape(
            name="one-off-10k",
            members_per_node=10_000,
            one_off_share=0.4,
            frequency_scale=0.3,
            newcomer_share=0.6,
            newcomer_early_lapse=0.7,
            description="mostly one-off buyers: 60 % join during the history, most buy once or twice",
        ),
        FederationShape(
            name="long-history-cny-10k",
            members_per_node=10_000,
            history_days=3 * 365,
            currency_per_usd=6.76,
            frequency_scale=0.5,
            lapsing_share=0.2,
            horizon_days=180,
            newcomer_share=0.4,
            newcomer_early_lapse=0.4,
            description="three years of history, amounts in CNY, six-month horizon, newcomers",
        ),
        FederationShape(
            name="short-history-jpy-1k",
            members_per_node=1_000,
            history_days=60,
            currency_per_usd=110.0,
            newcomer_share=0.3,
            newcomer_early_lapse=0.5,
            description="two months of history, amounts in JPY, newcomers",
        ),
    )
}
