"""Metrics of a scored binary task: ROC-AUC, PR-AUC, Brier, calibration, fairness gaps, and
federated AUC from per-node score histograms.

Everything here is plain numpy and pins its definitions to scikit-learn's (tests compare them):
``roc_auc`` is the Mann-Whitney statistic with ties counted as one half (Hanley & McNeil, Radiology
143(1), 1982); ``pr_auc`` is average precision, the step-wise area of scikit-learn's
``average_precision_score``; ``brier`` is Brier (1950), the mean squared error of probabilities.
Functions return NaN where a metric is undefined (one class only), so a small node's report never
raises in the middle of a federated round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FAIRNESS_GAP_WARNING",
    "CalibrationCurve",
    "FairnessGap",
    "ScoreHistogram",
    "auc_from_histograms",
    "auc_standard_error",
    "binary_metrics",
    "brier",
    "calibration_curve",
    "fairness_gaps",
    "k_anonymous_histogram",
    "pr_auc",
    "roc_auc",
    "roc_points",
    "small_bins",
]

# The retail plans' fairness rule: warn when a group gap in AUC or positive rate exceeds 15 points.
FAIRNESS_GAP_WARNING = 0.15
# DESIGN.md: an aggregate that leaves a node covers at least k = 20 members.
DEFAULT_K = 20


def _arrays(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {p.shape[0]}")
    return y, p


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; NaN unless both classes are present."""
    y, p = _arrays(y, p)
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mid-ranks of tied scores
    rank_sum = float(average_rank[inverse][y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def auc_standard_error(auc: float, n_positives: int, n_negatives: int) -> float:
    """Standard error of an ROC-AUC estimate (Hanley & McNeil, Radiology 143(1), 1982, eq. 2).

    Useful to read differences between models scored on a few hundred held-out members: with ~70
    positives, an AUC near 0.78 carries a standard error near 0.03.
    """
    if n_positives <= 0 or n_negatives <= 0 or not np.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (n_positives - 1) * (q1 - auc**2) + (n_negatives - 1) * (q2 - auc**2)) / (
        n_positives * n_negatives
    )
    return float(np.sqrt(max(variance, 0.0)))


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    y, p = _arrays(y, p)
    order = np.argsort(-p, kind="mergesort")
    y, p = y[order], p[order]
    last_of_tie = np.r_[np.diff(p) != 0, True]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(1 - y)[last_of_tie]
    tpr = np.r_[0.0, tp / max(tp[-1], 1.0)] if len(tp) else np.array([0.0, 1.0])
    fpr = np.r_[0.0, fp / max(fp[-1], 1.0)] if len(fp) else np.array([0.0, 1.0])
    return fpr, tpr


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall step curve); NaN without positives."""
    y, p = _arrays(y, p)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    y, p = y[order], p[order]
    last_of_tie = np.r_[np.diff(p) != 0, True]
    tp = np.cumsum(y)[last_of_tie]
    predicted = (np.arange(1, len(y) + 1))[last_of_tie]
    precision = tp / predicted
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (lower is better)."""
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2)) if len(y) else float("nan")


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """``auc``, ``pr_auc``, ``brier``, ``n`` and ``base_rate`` in one dictionary."""
    y, p = _arrays(y, p)
    return {
        "auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "brier": brier(y, p),
        "n": float(len(y)),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
    }


@dataclass(frozen=True)
class CalibrationCurve:
    """Reliability diagram data over equal-width probability bins (empty bins have NaN means)."""

    bin_edges: np.ndarray
    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    counts: np.ndarray

    def expected_calibration_error(self) -> float:
        """Count-weighted mean |fraction positive - mean predicted| over non-empty bins."""
        seen = self.counts > 0
        gaps = np.abs(self.fraction_positive[seen] - self.mean_predicted[seen])
        return float(np.sum(gaps * self.counts[seen]) / max(self.counts.sum(), 1))


def calibration_curve(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> CalibrationCurve:
    """Bin probabilities into ``n_bins`` equal-width bins of [0, 1] and compare with outcomes."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    y, p = _arrays(y, p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    slot = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(slot, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(slot, weights=p, minlength=n_bins) / counts
        fraction_positive = np.bincount(slot, weights=y, minlength=n_bins) / counts
    return CalibrationCurve(edges, mean_predicted, fraction_positive, counts)


@dataclass(frozen=True)
class FairnessGap:
    """Per-group AUC and positive rate for one attribute, and the largest gaps between groups."""

    attribute: str
    auc_by_group: dict[str, float]
    positive_rate_by_group: dict[str, float]
    auc_gap: float
    positive_rate_gap: float
    groups_suppressed: int  # groups below the minimum size, left out (k-anonymity)

    @property
    def warning(self) -> bool:
        """True when either gap exceeds `FAIRNESS_GAP_WARNING` (15 points)."""
        return bool(self.auc_gap > FAIRNESS_GAP_WARNING or self.positive_rate_gap > FAIRNESS_GAP_WARNING)


def fairness_gaps(
    y: np.ndarray,
    p: np.ndarray,
    groups: Mapping[str, np.ndarray],
    *,
    threshold: float | None = None,
    min_group_size: int = DEFAULT_K,
    ignore: Iterable[str] = ("unknown",),
) -> list[FairnessGap]:
    """Gaps in AUC and in predicted-positive rate between the groups of each attribute.

    Parameters
    ----------
    groups
        Attribute name -> group label per example (e.g. ``TaskDataset.groups``).
    threshold
        Score at or above which an example counts as predicted positive. Default: the score quantile
        that makes the overall predicted-positive rate equal the observed base rate, so the positive
        rate compares like with like whatever the model's calibration.
    min_group_size
        Groups smaller than this are left out (and counted), as no metric over fewer than k members
        is reported (DESIGN.md).
    ignore
        Group labels that are not a group (members who did not state the attribute).
    """
    y, p = _arrays(y, p)
    if threshold is None:
        threshold = float(np.quantile(p, 1.0 - y.mean())) if len(y) else 0.5
    skip = set(ignore)
    out = []
    for attribute, labels in groups.items():
        labels = np.asarray(labels, dtype=object)
        auc_by, rate_by, suppressed = {}, {}, 0
        for group in sorted(set(labels) - skip):
            member = labels == group
            if member.sum() < min_group_size:
                suppressed += 1
                continue
            auc_by[group] = roc_auc(y[member], p[member])
            rate_by[group] = float(np.mean(p[member] >= threshold))
            # A group with one class has no AUC; it still has a positive rate.
        out.append(FairnessGap(attribute, auc_by, rate_by, _spread(auc_by), _spread(rate_by), suppressed))
    return out


def _spread(values: Mapping[str, float]) -> float:
    finite = [v for v in values.values() if np.isfinite(v)]
    return float(max(finite) - min(finite)) if len(finite) >= 2 else 0.0


@dataclass(frozen=True)
class ScoreHistogram:
    """Counts of positives and negatives per fixed score bin: what a node may share for evaluation.

    Bins are ``n_bins`` equal-width slices of [0, 1], identical at every node, so histograms merge by
    addition and the pooled AUC needs no per-member score to leave a node.
    """

    positives: np.ndarray
    negatives: np.ndarray

    def __post_init__(self) -> None:
        if self.positives.shape != self.negatives.shape or self.positives.ndim != 1:
            raise ValueError("positives and negatives must be 1-D arrays of the same length")

    @property
    def n_bins(self) -> int:
        return len(self.positives)

    @property
    def totals(self) -> np.ndarray:
        return self.positives + self.negatives

    @classmethod
    def from_scores(cls, y: np.ndarray, p: np.ndarray, *, n_bins: int = 100) -> ScoreHistogram:
        """Bin scores in [0, 1] (values outside are clipped) into ``n_bins`` bins."""
        y, p = _arrays(y, p)
        slot = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
        positives = np.bincount(slot[y == 1], minlength=n_bins).astype(np.int64)
        negatives = np.bincount(slot[y != 1], minlength=n_bins).astype(np.int64)
        return cls(positives, negatives)

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge histograms with {self.n_bins} and {other.n_bins} bins")
        return ScoreHistogram(self.positives + other.positives, self.negatives + other.negatives)

    def to_dict(self) -> dict[str, list[int]]:
        """JSON-ready counts (what travels in a federated evaluation message)."""
        return {"positives": self.positives.tolist(), "negatives": self.negatives.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[int]]) -> ScoreHistogram:
        positives = np.asarray(list(data["positives"]), dtype=np.int64)
        return cls(positives, np.asarray(list(data["negatives"]), dtype=np.int64))


def auc_from_histograms(histograms: ScoreHistogram | Iterable[ScoreHistogram]) -> float:
    """Pooled ROC-AUC from (merged) score histograms.

    A positive outranks every negative in a lower bin and ties (counts one half) with negatives in
    its own bin, so the result equals the exact AUC of the binned scores; with many bins it is the
    exact AUC up to pairs that share a bin.
    """
    merged = _merge(histograms)
    n_pos, n_neg = merged.positives.sum(), merged.negatives.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives_below = np.cumsum(merged.negatives) - merged.negatives
    wins = merged.positives * (negatives_below + 0.5 * merged.negatives)
    return float(wins.sum() / (n_pos * n_neg))


def _merge(histograms: ScoreHistogram | Iterable[ScoreHistogram]) -> ScoreHistogram:
    if isinstance(histograms, ScoreHistogram):
        return histograms
    items = list(histograms)
    if not items:
        raise ValueError("no histograms to merge")
    merged = items[0]
    for item in items[1:]:
        merged = merged + item
    return merged


def small_bins(histogram: ScoreHistogram, k: int = DEFAULT_K) -> np.ndarray:
    """Boolean mask of non-empty bins holding fewer than ``k`` members."""
    totals = histogram.totals
    return (totals > 0) & (totals < k)


def k_anonymous_histogram(histogram: ScoreHistogram, k: int = DEFAULT_K) -> ScoreHistogram:
    """Merge adjacent bins until every non-empty bin holds at least ``k`` members.

    Each run of merged bins is stored in the run's middle bin, so the result keeps the common bin
    grid (it still adds to other nodes' histograms) at the price of treating a run's members as tied.
    A node with fewer than ``k`` members in total is collapsed into one bin; the caller decides
    whether such a node may report at all.
    """
    totals = histogram.totals
    positives = np.zeros_like(histogram.positives)
    negatives = np.zeros_like(histogram.negatives)
    runs = _runs_of_at_least(totals, k)
    for start, stop in runs:
        middle = (start + stop - 1) // 2
        positives[middle] = histogram.positives[start:stop].sum()
        negatives[middle] = histogram.negatives[start:stop].sum()
    return ScoreHistogram(positives, negatives)


def _runs_of_at_least(totals: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Split bin indices into consecutive runs each holding >= k (the last run absorbs a short tail)."""
    runs: list[tuple[int, int]] = []
    start, count = 0, 0
    for index, total in enumerate(totals):
        count += int(total)
        if count >= k:
            runs.append((start, index + 1))
            start, count = index + 1, 0
    if start < len(totals):
        if runs and count > 0:
            runs[-1] = (runs[-1][0], len(totals))
        elif not runs:
            runs.append((0, len(totals)))
    return runs
