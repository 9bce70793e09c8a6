"""Member-level privacy of a DP GBDT training: RDP of its Gaussian releases, composed.

A training makes three kinds of Gaussian release, each with noise = noise multiplier z times the
release's L2 sensitivity (`models.gbdt_histograms`), so each is a Gaussian mechanism of multiplier z:

* the fine-cell counts the bins are cut from, once, over every training member (unless the bins are
  the public grid itself);
* per tree, ``releases_per_tree`` releases on ONE Poisson sample of members (rate q): the level
  histograms of a tree that splits by gain (one per depth level) and the leaf sums.

r adaptively composed Gaussian mechanisms of multiplier z are exactly one Gaussian mechanism of
multiplier z / sqrt(r) (Dong, Roth and Su, "Gaussian Differential Privacy", JRSS-B 2022, Cor. 3.3),
so a tree is one step of the sampled Gaussian mechanism with that multiplier and rate q, whose RDP is
Opacus's (Mironov, Talwar and Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism",
2019); with q = 1 it is the plain Gaussian's alpha r / (2 z^2). RDP adds up across releases and is
converted to (ε, δ) at the best order (Opacus's ``get_privacy_spent``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

__all__ = ["GbdtReleases", "calibrate_gbdt_noise", "gbdt_epsilon"]

_ORDERS = RDPAccountant.DEFAULT_ALPHAS


@dataclass(frozen=True)
class GbdtReleases:
    """How many Gaussian releases a training makes, and on which members.

    Attributes
    ----------
    trees
        Boosting rounds; each draws a fresh Poisson sample of members at ``sample_rate``.
    releases_per_tree
        Releases on one tree's sample: the depth for gain splits (one histogram per level) plus 1
        for the leaves; 1 for data-independent splits.
    bin_releases
        Releases over every member (q = 1): 1 when the bins are cut from noisy counts, else 0.
    sample_rate
        Poisson rate q of a member's inclusion in a tree's sample, in (0, 1].
    """

    trees: int
    releases_per_tree: int
    bin_releases: int
    sample_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.trees < 1 or self.releases_per_tree < 1 or self.bin_releases < 0:
            raise ValueError(f"need trees >= 1, releases_per_tree >= 1, bin_releases >= 0: {self}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")

    @property
    def total(self) -> int:
        return self.trees * self.releases_per_tree + self.bin_releases


def _rdp(noise_multiplier: float, releases: GbdtReleases) -> list[float]:
    per_tree = noise_multiplier / math.sqrt(releases.releases_per_tree)
    trees = compute_rdp(
        q=releases.sample_rate, noise_multiplier=per_tree, steps=releases.trees, orders=_ORDERS
    )
    if releases.bin_releases == 0:
        return list(trees)
    bins = compute_rdp(q=1.0, noise_multiplier=noise_multiplier, steps=releases.bin_releases, orders=_ORDERS)
    return [a + b for a, b in zip(trees, bins, strict=True)]


def gbdt_epsilon(*, noise_multiplier: float, releases: GbdtReleases, delta: float) -> float:
    """ε at ``delta`` of a training whose every release has multiplier ``noise_multiplier``."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if noise_multiplier <= 0:
        return math.inf
    epsilon, _ = get_privacy_spent(orders=_ORDERS, rdp=_rdp(noise_multiplier, releases), delta=delta)
    return float(epsilon)


def calibrate_gbdt_noise(
    *, epsilon: float, delta: float, releases: GbdtReleases, tolerance: float = 0.005
) -> float:
    """The smallest multiplier (to ``tolerance`` in ε) whose training stays within (ε, δ); never above ε."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    low, high = 0.0, 1.0
    while gbdt_epsilon(noise_multiplier=high, releases=releases, delta=delta) > epsilon:
        low, high = high, 2.0 * high
        if high > 1e6:
            raise ValueError(f"no noise multiplier reaches epsilon={epsilon} at delta={delta} for {releases}")
    # Bisection keeps gbdt_epsilon(high) <= epsilon throughout, so the answer never overshoots.
    while True:
        mid = (low + high) / 2
        spent = gbdt_epsilon(noise_multiplier=mid, releases=releases, delta=delta)
        if spent > epsilon:
            low = mid
        else:
            high = mid
            if epsilon - spent < tolerance:
                return high
        if high - low < 1e-9:
            return high
