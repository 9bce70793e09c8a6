"""Vectorised draws of shopping behaviour for a chunk of synthetic members, from a `Calibration`.

Model (every parameter from `loyalfed.datasets.calibration`):

- yearly basket rate: inverse-CDF interpolation of the Complete Journey quantiles;
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


@dataclass(frozen=True)
class MemberBehaviour:
    rate: np.ndarray  # baskets per year
    active_us: np.ndarray  # length of the active period, microseconds from the start
    log_spend_mean: np.ndarray


@dataclass(frozen=True)
class Baskets:
    member: np.ndarray  # index of the member within the chunk, sorted ascending
    offset_us: np.ndarray  # microseconds from the period start
    amount: np.ndarray
    discount: np.ndarray
    at_home_store: np.ndarray  # bool


def draw_members(
    count: int, days: int, calibration: Calibration, rng: np.random.Generator
) -> MemberBehaviour:
    """Basket rate, active span and mean log spend of ``count`` members."""
    levels = np.linspace(0.0, 1.0, len(calibration.baskets_per_member_quantiles))
    rate = np.interp(rng.random(count), levels, calibration.baskets_per_member_quantiles)
    period_us = days * _US_PER_DAY
    lapsing = rng.random(count) < explicit_lapser_share(calibration, days)
    latest_stop = max(period_us - LAPSE_WINDOW_DAYS * _US_PER_DAY, period_us // 10)
    stop = (rng.uniform(0.1, 1.0, count) * latest_stop).astype(np.int64)
    active_us = np.where(lapsing, stop, period_us)
    spend = rng.normal(calibration.log_spend_mean, calibration.log_spend_between_sd, count)
    return MemberBehaviour(rate=rate, active_us=active_us, log_spend_mean=spend)


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
    expected = members.rate * members.active_us / (days * _US_PER_DAY)
    counts = np.maximum(rng.poisson(expected), 1)
    member = np.repeat(np.arange(len(counts)), counts)
    offset = _renewal_times(counts, members.active_us, calibration.gap_shape, rng)
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
