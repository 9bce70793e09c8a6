"""Vectorised draws of shopping behaviour for a chunk of synthetic members, from a `Calibration`.

Model (every parameter from `loyalfed.datasets.calibration`):

- yearly basket rate: inverse-CDF interpolation of the Complete Journey quantiles;
- newcomers (``newcomer_share``) join at a uniform time inside the period instead of before it, and
  a share of them (``newcomer_early_lapse``) stop within ``EARLY_LAPSE_DAYS`` of joining: the
  one-and-done buyers every loyalty programme has, whose one or two purchases tell little;
- lapsing members stop shopping at a uniform time before the last 8 weeks, the others shop over
  the whole period; their share is set so that the share *observed* without a basket in the last
  8 weeks matches the calibration (`explicit_lapser_share`);
- basket count: Poisson(rate x active span); basket times: a gamma renewal process with the
  calibrated shape, conditioned on the count (normalised cumulative gamma gaps, i.e. Dirichlet
  spacings), so gap burstiness matches the data;
- basket spend: log-normal with a member-level mean; discount: calibrated share of spend times a
  Uniform(0, 2) factor; store: the member's home store with the calibrated share, else any store.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from loyalfed.datasets.calibration import LAPSE_WINDOW_DAYS, Calibration

__all__ = ["Baskets", "MemberBehaviour", "draw_baskets", "draw_members"]

_US_PER_DAY = 86_400 * 1_000_000
EARLY_LAPSE_DAYS = 60


@dataclass(frozen=True)
class MemberBehaviour:
    rate: np.ndarray  # baskets per year
    active_us: np.ndarray  # end of the active period, microseconds from the start
    log_spend_mean: np.ndarray
    first_us: np.ndarray | None = None  # start of the active period (None: the period's start)

    @property
    def start_us(self) -> np.ndarray:
        return np.zeros_like(self.active_us) if self.first_us is None else self.first_us


@dataclass(frozen=True)
class Baskets:
    member: np.ndarray  # index of the member within the chunk, sorted ascending
    offset_us: np.ndarray  # microseconds from the period start
    amount: np.ndarray
    discount: np.ndarray
    at_home_store: np.ndarray  # bool


def draw_members(
    count: int,
    days: int,
    calibration: Calibration,
    rng: np.random.Generator,
    *,
    newcomer_share: float = 0.0,
    newcomer_early_lapse: float = 0.0,
) -> MemberBehaviour:
    """Basket rate, active span and mean log spend of ``count`` members (newcomers: module docstring)."""
    levels = np.linspace(0.0, 1.0, len(calibration.baskets_per_member_quantiles))
    rate = np.interp(rng.random(count), levels, calibration.baskets_per_member_quantiles)
    period_us = days * _US_PER_DAY
    lapsing = rng.random(count) < explicit_lapser_share(calibration, days)
    latest_stop = max(period_us - LAPSE_WINDOW_DAYS * _US_PER_DAY, period_us // 10)
    stop = (rng.uniform(0.1, 1.0, count) * latest_stop).astype(np.int64)
    active_us = np.where(lapsing, stop, period_us)
    spend = rng.normal(calibration.log_spend_mean, calibration.log_spend_between_sd, count)
    if newcomer_share <= 0.0:  # no extra draws: federations without newcomers stay as they were
        return MemberBehaviour(rate=rate, active_us=active_us, log_spend_mean=spend)
    newcomer = rng.random(count) < newcomer_share
    first = np.where(newcomer, (rng.random(count) * period_us).astype(np.int64), 0)
    early = newcomer & (rng.random(count) < newcomer_early_lapse)
    early_stop = first + (rng.uniform(0.0, 1.0, count) * EARLY_LAPSE_DAYS * _US_PER_DAY).astype(np.int64)
    active_us = np.where(early, np.minimum(early_stop, period_us), np.maximum(active_us, first + 1))
    return MemberBehaviour(rate=rate, active_us=active_us, log_spend_mean=spend, first_us=first)


@functools.cache
def explicit_lapser_share(calibration: Calibration, days: int) -> float:
    """Share of members to stop early so that the share *seen* lapsing matches the calibration.

    Without anyone stopping, a member with n baskets already has no basket in the last 8 weeks with
    probability P(last gap > 8 weeks), the last gap being a Beta(k, n k) share of the period
    (Dirichlet spacings of the gamma renewal process). Estimated by Monte Carlo on a fixed seed.
    """
    rng = np.random.default_rng(0)
    levels = np.linspace(0.0, 1.0, len(calibration.baskets_per_member_quantiles))
    rate = np.interp(rng.random(200_000), levels, calibration.baskets_per_member_quantiles)
    n = np.maximum(rng.poisson(rate * days / 365), 1)
    last_gap = rng.beta(calibration.gap_shape, n * calibration.gap_shape)
    natural = float(np.mean(last_gap * days > LAPSE_WINDOW_DAYS))
    return max(0.0, (calibration.lapsing_share - natural) / (1.0 - natural))


def draw_baskets(
    members: MemberBehaviour, days: int, calibration: Calibration, rng: np.random.Generator
) -> Baskets:
    """Every basket of the chunk's members, grouped by member, in time order within a member."""
    span_us = members.active_us - members.start_us
    expected = members.rate * span_us / (days * _US_PER_DAY)
    counts = np.maximum(rng.poisson(expected), 1)
    member = np.repeat(np.arange(len(counts)), counts)
    offset = _renewal_times(counts, span_us, calibration.gap_shape, rng)
    if members.first_us is not None:
        offset = offset + members.first_us[member]
    # float32 draws are ample for cents on amounts below 10^5 and about a third faster.
    noise = rng.standard_normal(len(member), dtype=np.float32) * np.float32(calibration.log_spend_within_sd)
    log_spend = members.log_spend_mean[member].astype(np.float32) + noise
    amount = np.round(np.exp(log_spend).astype(np.float64), 2)
    # Discount: calibrated share of spend times a Uniform(0, 2) factor (mean 1).
    discount = np.round(amount * (calibration.discount_share * 2.0) * rng.random(len(member)), 2)
    at_home = rng.random(len(member)) < calibration.home_store_share
    return Baskets(member=member, offset_us=offset, amount=amount, discount=discount, at_home_store=at_home)


def _renewal_times(
    counts: np.ndarray, span_us: np.ndarray, shape: float, rng: np.random.Generator
) -> np.ndarray:
    """Basket times of each member: n gamma-renewal events in (0, span), given n."""
    segment = counts + 1  # n events cut the span into n + 1 gaps
    ends = np.cumsum(segment)
    gaps = rng.standard_gamma(shape, int(ends[-1]), dtype=np.float32)
    running = np.cumsum(gaps, dtype=np.float64)  # float64 sums: float32 would drift over millions
    before = np.concatenate(([0.0], running[ends[:-1] - 1]))
    within = running - np.repeat(before, segment)
    keep = np.ones(len(gaps), dtype=bool)
    keep[ends - 1] = False
    fraction = within[keep] / np.repeat(within[ends - 1], counts)
    return (fraction * np.repeat(span_us, counts)).astype(np.int64)
