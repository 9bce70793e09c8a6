"""Fairness gaps between demographic groups, from score histograms summed across nodes.

The retail plans' rule: a gap above 15 points (``models.metrics.FAIRNESS_GAP_WARNING``) in AUC or in
predicted-positive rate between two groups of one attribute raises an alarm. Each group's histogram
is summed across nodes like the overall one (``models.score_histogram_metrics``), so a group counts
once the FEDERATION holds k of its held-out members, wherever they sit.

Small groups make noisy gaps: two groups of 30 members differ in AUC by 0.2 by chance alone. So
the alarm fires only when the gap is also statistically clear of zero: the gap exceeds z times its
standard error, with z the two-sided 95% normal quantile Bonferroni-corrected over the pairs of
groups compared (the largest gap is the maximum over all pairs). Standard errors are upper bounds,
so the alarm errs towards silence only where the data cannot speak: an AUC's variance is at most
A (1 - A) / min(m, n) for m positives and n negatives (Birnbaum & Klose, Ann. Math. Stat. 28, 1957),
with A kept within [0.05, 0.95] so that a perfect score on three positives is not taken as certain;
a rate gap's is the two-proportion z-test's, p0 (1 - p0) (1/n1 + 1/n2) with p0 the two groups'
pooled rate (the variance if the gap were chance), plus the DP noise on the counts where the
release carries any.
A group under k members is named as too small and nothing else is published about it; a group's
AUC needs at least `MIN_CLASS_MEMBERS` members of each class (else it is named in
``too_small_for_auc``); a gap above 15 points that is within noise is reported as such and does
not raise the alarm. A gap that cannot be measured is None, never 0, with the reason in plain words
(``not_computable``): an AUC gap needs two groups with an AUC, and a positive-rate gap needs someone
predicted positive (a model whose scores all sit below the cut predicts no group positive, which
is no evidence that the groups are treated alike).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from models.metrics import DEFAULT_K, FAIRNESS_GAP_WARNING
from models.score_histogram_metrics import ScoreHistogramTotal, binned_auc

__all__ = ["MIN_CLASS_MEMBERS", "GroupFairness", "base_rate_threshold_bin", "group_fairness"]

_CONFIDENCE = 0.95
MIN_CLASS_MEMBERS = 10


@dataclass(frozen=True)
class GroupFairness:
    """Per-group AUC and predicted-positive rate of one attribute, and the alarm.

    ``too_small`` names the groups with fewer than k held-out members in the federation's total:
    nothing is published about them but that they were too small to report.
    """

    attribute: str
    auc_by_group: dict[str, float]
    positive_rate_by_group: dict[str, float]
    members_by_group: dict[str, int]
    too_small: tuple[str, ...]
    too_small_for_auc: tuple[str, ...]
    auc_gap: float | None  # None: fewer than two groups with an AUC
    positive_rate_gap: float | None  # None: fewer than two groups, or nobody predicted positive
    auc_gap_standard_error: float
    positive_rate_gap_standard_error: float
    threshold: float
    z: float

    @property
    def auc_gap_clear_of_noise(self) -> bool:
        return self.auc_gap is not None and self.auc_gap > self.z * self.auc_gap_standard_error

    @property
    def positive_rate_gap_clear_of_noise(self) -> bool:
        gap = self.positive_rate_gap
        return gap is not None and gap > self.z * self.positive_rate_gap_standard_error

    @property
    def alarm(self) -> bool:
        """A gap above 15 points that is not explained by the groups' sampling (and DP) noise."""
        auc = _above_warning(self.auc_gap) and self.auc_gap_clear_of_noise
        rate = _above_warning(self.positive_rate_gap) and self.positive_rate_gap_clear_of_noise
        return auc or rate

    @property
    def within_noise(self) -> bool:
        """A gap above 15 points that the groups' sizes cannot tell from chance (no alarm)."""
        above = _above_warning(self.auc_gap) or _above_warning(self.positive_rate_gap)
        return above and not self.alarm

    @property
    def not_computable(self) -> tuple[str, ...]:
        """Why a gap is None, in plain words for the card and the report (empty when both are measured)."""
        reasons = []
        if len(self.positive_rate_by_group) < 2:
            reasons.append(f"no gap: fewer than two groups of at least k held-out members ({self.attribute})")
        elif self.positive_rate_gap is None:
            reasons.append(
                f"no member of any group predicted positive at the cut (score >= {self.threshold:.3f}): "
                "positive-rate gap not computable"
            )
        if len(self.positive_rate_by_group) >= 2 and self.auc_gap is None:
            reasons.append(
                f"AUC gap not computable: fewer than two groups with at least {MIN_CLASS_MEMBERS} "
                f"held-out members of each class (positives and negatives; too few in: "
                f"{', '.join(self.too_small_for_auc) or 'none'})"
            )
        return tuple(reasons)

    def to_dict(self) -> dict[str, object]:
        return {
            "auc_by_group": {g: round(v, 4) for g, v in sorted(self.auc_by_group.items())},
            "positive_rate_by_group": {
                g: round(v, 4) for g, v in sorted(self.positive_rate_by_group.items())
            },
            "members_by_group": dict(sorted(self.members_by_group.items())),
            "too_small_to_report": list(self.too_small),
            "too_small_for_auc": list(self.too_small_for_auc),
            "auc_gap": None if self.auc_gap is None else round(self.auc_gap, 4),
            "positive_rate_gap": None if self.positive_rate_gap is None else round(self.positive_rate_gap, 4),
            "auc_gap_standard_error": round(self.auc_gap_standard_error, 4),
            "positive_rate_gap_standard_error": round(self.positive_rate_gap_standard_error, 4),
            "warning": self.alarm,
            "gap_within_noise": self.within_noise,
            "not_computable": list(self.not_computable),
        }


def base_rate_threshold_bin(total: ScoreHistogramTotal) -> int:
    """The first fine bin counted as predicted positive, so the pooled predicted-positive share is
    as close as the grid allows to the pooled base rate (like `models.metrics.fairness_gaps`)."""
    pos, neg = np.clip(total.positives, 0, None), np.clip(total.negatives, 0, None)
    n = float(pos.sum() + neg.sum())
    share_at_or_above = np.cumsum((pos + neg)[::-1])[::-1] / n
    return int(np.argmin(np.abs(share_at_or_above - pos.sum() / n)))


def _auc_variance(auc: float, n_pos: float, n_neg: float) -> float:
    """Birnbaum & Klose's bound A (1 - A) / min(m, n), with A kept within [0.05, 0.95]."""
    a = min(max(auc, 0.05), 0.95)
    return a * (1 - a) / min(n_pos, n_neg)


@dataclass(frozen=True)
class _Group:
    auc: float | None
    auc_variance: float
    rate: float
    rate_noise_variance: float
    members: int
    above: float


def _group(total: ScoreHistogramTotal, cut: int, count_noise_variance: float) -> _Group:
    pos, neg = np.clip(total.positives, 0, None), np.clip(total.negatives, 0, None)
    n, n_pos, n_neg = float(pos.sum() + neg.sum()), float(pos.sum()), float(neg.sum())
    above = float(pos[cut:].sum() + neg[cut:].sum())
    # DP noise: the predicted-positive count sums 2 (n_bins - cut) noisy counts.
    noise_variance = 2 * (total.n_bins - cut) * count_noise_variance / n**2
    auc, auc_variance = None, math.inf
    if min(n_pos, n_neg) >= MIN_CLASS_MEMBERS:
        auc = binned_auc(pos, neg)
        auc_variance = _auc_variance(auc, n_pos, n_neg)
    return _Group(auc, auc_variance, above / n, noise_variance, round(n), above)


def group_fairness(
    overall: ScoreHistogramTotal,
    groups: dict[str, ScoreHistogramTotal],
    *,
    attribute: str,
    k: int = DEFAULT_K,
    count_noise_sigma: float = 0.0,
) -> GroupFairness:
    """Gaps between the groups of ``attribute``, each group's histogram summed across nodes.

    ``count_noise_sigma`` is the standard deviation of the DP noise on every summed count (0 for an
    exact total).
    """
    cut = base_rate_threshold_bin(overall)
    measured: dict[str, _Group] = {}
    small = []
    for name, total in sorted(groups.items()):
        if total.n < k:
            small.append(name)
        else:
            measured[name] = _group(total, cut, count_noise_sigma**2)
    auc = {g: m.auc for g, m in measured.items() if m.auc is not None}
    rate = {g: m.rate for g, m in measured.items()}
    pairs = max(1, len(measured) * (len(measured) - 1) // 2)
    return GroupFairness(
        attribute=attribute,
        auc_by_group=auc,
        positive_rate_by_group=rate,
        members_by_group={g: m.members for g, m in measured.items()},
        too_small=tuple(small),
        too_small_for_auc=tuple(g for g, m in measured.items() if m.auc is None),
        auc_gap=_spread(auc),
        # Every rate 0: nobody is predicted positive, so the rates say nothing about the groups.
        positive_rate_gap=_spread(rate) if any(v > 0 for v in rate.values()) else None,
        auc_gap_standard_error=_gap_error(auc, {g: m.auc_variance for g, m in measured.items()}),
        positive_rate_gap_standard_error=_rate_gap_error(measured),
        threshold=cut / overall.n_bins,
        z=NormalDist().inv_cdf(1 - (1 - _CONFIDENCE) / 2 / pairs),
    )


def _spread(values: dict[str, float]) -> float | None:
    return float(max(values.values()) - min(values.values())) if len(values) >= 2 else None


def _above_warning(gap: float | None) -> bool:
    return gap is not None and gap > FAIRNESS_GAP_WARNING


def _rate_gap_error(groups: dict[str, _Group]) -> float:
    """Standard error of the rate gap under the null of one rate (two-proportion z-test)."""
    if len(groups) < 2:
        return 0.0
    high, low = max(groups.values(), key=lambda g: g.rate), min(groups.values(), key=lambda g: g.rate)
    pooled = (high.above + low.above) / (high.members + low.members)
    sampling = pooled * (1 - pooled) * (1 / high.members + 1 / low.members)
    return math.sqrt(sampling + high.rate_noise_variance + low.rate_noise_variance)


def _gap_error(values: dict[str, float], variances: dict[str, float]) -> float:
    """Standard error of (largest - smallest), the two groups taken as independent samples."""
    if len(values) < 2:
        return 0.0
    high, low = max(values, key=values.__getitem__), min(values, key=values.__getitem__)
    return math.sqrt(variances[high] + variances[low])
