"""Federated evaluation from per-node score histograms: pooled and per-node ROC-AUC, PR-AUC, Brier.

Nodes send only binned counts (every bin over ≥ k members). A node's bins may be coarser than
another's (small bins are merged at the node), so pooling evaluates every node's cumulative counts
at the union of all edges, interpolating linearly in logit(score) inside a merged bin, i.e.
assuming scores spread evenly on the logit scale within it. The ROC is then the polyline through
those points and the AUC its trapezoid area, which counts a positive and a negative in the same
bin as half a correct ordering: exactly the Mann-Whitney statistic with ties (Hanley and McNeil,
Radiology 1982) when the bins are not merged.

A node's own AUC is the exact one it reports (``Histogram.auc``: the Mann-Whitney statistic over all
its held-out members, an aggregate over ≥ k members like its Brier score), falling back to its
histogram's when it reports none: at 60–110 held-out members a node's k-histogram has 3–5 bins and
reads 0.03–0.07 low.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FAIRNESS_GAP_WARNING",
    "EvaluationSummary",
    "Histogram",
    "fairness_gaps",
    "pooled_roc",
    "summarise",
]


@dataclass(frozen=True)
class Histogram:
    """One node's held-out counts per score bin, plus its Brier score (a mean over the same members)."""

    partner_id: str
    edges: tuple[float, ...]
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    brier: float
    auc: float | None = None  # the node's exact AUC over the same members, when it reports one

    @property
    def n(self) -> int:
        return sum(self.positives) + sum(self.negatives)


@dataclass(frozen=True)
class EvaluationSummary:
    auc: float
    pr_auc: float
    brier: float
    n: int
    base_rate: float
    node_auc: dict[str, float]
    roc_fpr: tuple[float, ...]
    roc_tpr: tuple[float, ...]
    fairness: dict[str, dict[str, object]] = field(default_factory=dict)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _counts_at_or_above(hist: Histogram, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated (positives, negatives) with score ≥ each threshold."""
    edges = _logit(np.asarray(hist.edges, dtype=float))
    pos = np.asarray(hist.positives, dtype=float)
    neg = np.asarray(hist.negatives, dtype=float)
    # Cumulative counts at or above each edge: exact at the node's own edges.
    pos_above = np.concatenate((np.cumsum(pos[::-1])[::-1], [0.0]))
    neg_above = np.concatenate((np.cumsum(neg[::-1])[::-1], [0.0]))
    t = _logit(thresholds)
    return np.interp(t, edges, pos_above), np.interp(t, edges, neg_above)


def pooled_roc(histograms: Sequence[Histogram]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, tp, fp) at every edge of every histogram, from the highest threshold to the lowest."""
    thresholds = np.unique(np.concatenate([np.asarray(h.edges) for h in histograms]))[::-1]
    tp = np.zeros(len(thresholds))
    fp = np.zeros(len(thresholds))
    for hist in histograms:
        p, n = _counts_at_or_above(hist, thresholds)
        tp += p
        fp += n
    total_pos = sum(sum(h.positives) for h in histograms)
    total_neg = sum(sum(h.negatives) for h in histograms)
    if total_pos == 0 or total_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative member")
    return fp / total_neg, tp / total_pos, tp, fp


def _auc(histograms: Sequence[Histogram]) -> float:
    fpr, tpr, _, _ = pooled_roc(histograms)
    return float(np.trapezoid(tpr, fpr))


def _pr_auc(histograms: Sequence[Histogram]) -> float:
    """Average precision: Σ (recallᵢ − recallᵢ₋₁) · precisionᵢ over the pooled thresholds."""
    _, tpr, tp, fp = pooled_roc(histograms)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    recall_steps = np.diff(np.concatenate(([0.0], tpr)))
    return float(np.sum(recall_steps * precision))


def summarise(histograms: Sequence[Histogram]) -> EvaluationSummary:
    """Pooled metrics over every node's held-out members, and each node's own AUC."""
    if not histograms:
        raise ValueError("no histograms to evaluate")
    fpr, tpr, _, _ = pooled_roc(histograms)
    n = sum(h.n for h in histograms)
    positives = sum(sum(h.positives) for h in histograms)
    node_auc: dict[str, float] = {}
    for hist in histograms:
        if sum(hist.positives) and sum(hist.negatives):
            node_auc[hist.partner_id] = hist.auc if hist.auc is not None else _auc([hist])
    return EvaluationSummary(
        auc=float(np.trapezoid(tpr, fpr)),
        pr_auc=_pr_auc(histograms),
        brier=float(sum(h.brier * h.n for h in histograms) / n),
        n=n,
        base_rate=positives / n,
        node_auc=node_auc,
        roc_fpr=tuple(float(x) for x in fpr),
        roc_tpr=tuple(float(x) for x in tpr),
    )


# The retail plans' fairness rule: a gap above 15 points in AUC or predicted-positive rate is flagged.
FAIRNESS_GAP_WARNING = 0.15


def _share_at_or_above(histograms: Sequence[Histogram], threshold: float) -> float:
    total = sum(h.n for h in histograms)
    above = 0.0
    for hist in histograms:
        p, n = _counts_at_or_above(hist, np.array([threshold]))
        above += float(p[0] + n[0])
    return above / total


def _base_rate_threshold(histograms: Sequence[Histogram]) -> float:
    """The score above which the pooled predicted-positive share equals the pooled base rate."""
    base_rate = sum(sum(h.positives) for h in histograms) / sum(h.n for h in histograms)
    grid = 1.0 / (1.0 + np.exp(-np.linspace(-8, 8, 801)))
    shares = np.array([_share_at_or_above(histograms, t) for t in grid])  # decreasing in t
    return float(np.interp(-base_rate, -shares, grid))


def fairness_gaps(
    overall: Sequence[Histogram], groups: dict[str, dict[str, list[Histogram]]]
) -> dict[str, dict[str, object]]:
    """Per attribute: pooled AUC and predicted-positive rate per group, and the largest gaps.

    Every group histogram already holds ≥ k members at its node (smaller groups are never sent).
    The threshold makes the pooled predicted-positive rate equal the pooled base rate, as
    ``models.metrics.fairness_gaps`` does for centralized models.
    """
    threshold = _base_rate_threshold(overall)
    out: dict[str, dict[str, object]] = {}
    for attribute, by_group in sorted(groups.items()):
        auc = {
            g: _auc(h)
            for g, h in by_group.items()
            if sum(sum(x.positives) for x in h) and sum(sum(x.negatives) for x in h)
        }
        rate = {g: _share_at_or_above(h, threshold) for g, h in by_group.items()}
        auc_gap = max(auc.values()) - min(auc.values()) if len(auc) >= 2 else 0.0
        rate_gap = max(rate.values()) - min(rate.values()) if len(rate) >= 2 else 0.0
        out[attribute] = {
            "auc_by_group": {g: round(v, 4) for g, v in sorted(auc.items())},
            "positive_rate_by_group": {g: round(v, 4) for g, v in sorted(rate.items())},
            "auc_gap": round(auc_gap, 4),
            "positive_rate_gap": round(rate_gap, 4),
            "warning": bool(auc_gap > FAIRNESS_GAP_WARNING or rate_gap > FAIRNESS_GAP_WARNING),
        }
    return out
