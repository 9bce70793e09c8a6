"""Federated evaluation from the SUM of the nodes' evaluation vectors: pooled metrics and fairness.

Every node counts its held-out members on one public layout (``protocol.EvaluationLayout``: the
fine score grid of ``models.score_histogram_metrics``, overall and per demographic group); the
coordinator receives the element-wise sum over nodes -- masked by SecAgg+ so no node's vector is
seen (``coordinator.secure_server_app.SecureEvaluation``), or as DP-noised vectors summed here
(``coordinator.histogram_evaluation``). From the total alone:

* the pooled ROC-AUC (Mann-Whitney with ties inside a 0.001-wide bin), PR-AUC, the ROC curve drawn
  only at thresholds k members apart, and calibration bins of at least k members
  (``models.FederatedScoreMetrics``);
* per demographic attribute, each group's AUC and predicted-positive rate, groups under k members
  in the federation's total named as too small, and the 15-point alarm when a gap is clear of the
  groups' sampling and DP noise (``models.group_fairness``).

The Brier score, the held-out count and each node's own AUC are the clear aggregates each node
reports over its ≥ k held-out members.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.group_fairness import GroupFairness, group_fairness
from models.score_histogram_metrics import FederatedScoreMetrics, ScoreHistogramTotal
from protocol import EvaluationLayout, EvaluationReply

__all__ = ["EvaluationSummary", "auc_noise_sd", "summarise"]


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
    calibration_mean_predicted: tuple[float | None, ...] = ()
    calibration_fraction_positive: tuple[float | None, ...] = ()
    calibration_counts: tuple[int | None, ...] = ()
    fairness: dict[str, GroupFairness] = field(default_factory=dict)
    noise_sigma: float = 0.0  # standard deviation of the DP noise on each summed count (0: exact)
    secure_sum: bool = False  # the total came out of secure aggregation
    bins: int = 0
    auc_noise_sd: float = 0.0  # the AUC's standard deviation due to that noise (0: exact)

    @property
    def fairness_alarms(self) -> list[str]:
        """The attributes whose gap raised the 15-point alarm."""
        return [a for a, f in sorted(self.fairness.items()) if f.alarm]


def _without_score_sums(total: ScoreHistogramTotal) -> ScoreHistogramTotal:
    nan = np.full(total.n_bins, np.nan)
    return ScoreHistogramTotal(total.positives, total.negatives, nan, math.nan, math.nan)


def summarise(
    layout: EvaluationLayout,
    total: np.ndarray,
    replies: Sequence[EvaluationReply],
    *,
    k: int,
    secure_sum: bool,
) -> EvaluationSummary:
    """Pooled metrics of the summed vector ``total`` and the nodes' clear aggregates ``replies``.

    Raises ``ValueError`` when the total holds fewer than ``k`` members or only one class.
    """
    if not replies:
        raise ValueError("no node evaluated the model")
    overall, groups = layout.split(total)
    sigma = math.sqrt(sum(r.noise_sigma**2 for r in replies))
    if sigma > 0:  # a noisy release carries counts only: calibration means use bin centres
        overall = _without_score_sums(overall)
    metrics = FederatedScoreMetrics.of(overall, k=k)
    n = sum(r.num_examples for r in replies)
    by_attribute: dict[str, dict[str, ScoreHistogramTotal]] = {}
    for (attribute, group), part in groups.items():
        by_attribute.setdefault(attribute, {})[group] = part
    fairness = {
        attribute: group_fairness(overall, parts, attribute=attribute, k=k, count_noise_sigma=sigma)
        for attribute, parts in sorted(by_attribute.items())
    }
    return EvaluationSummary(
        auc=metrics.auc,
        pr_auc=metrics.pr_auc,
        brier=sum(r.brier * r.num_examples for r in replies) / n,
        n=n,
        base_rate=metrics.base_rate,
        node_auc={r.node.partner_id: r.auc for r in replies if r.auc is not None},
        roc_fpr=metrics.roc_fpr,
        roc_tpr=metrics.roc_tpr,
        calibration_mean_predicted=metrics.calibration_mean_predicted,
        calibration_fraction_positive=metrics.calibration_fraction_positive,
        calibration_counts=metrics.calibration_counts,
        fairness=fairness,
        noise_sigma=sigma,
        secure_sum=secure_sum,
        bins=layout.bins,
        auc_noise_sd=auc_noise_sd(overall, sigma),
    )


def auc_noise_sd(total: ScoreHistogramTotal, count_sigma: float) -> float:
    """The AUC's standard deviation due to Gaussian noise ``count_sigma`` on every count (0: exact).

    The delta method on AUC = Σᵢ pᵢ (Nᵢ + nᵢ/2) / (P·N), with Nᵢ the negatives in bins below i and
    Pⱼ the positives above j: ∂AUC/∂pᵢ = ((Nᵢ + nᵢ/2)/N − AUC)/P and ∂AUC/∂nⱼ =
    ((Pⱼ + pⱼ/2)/P − AUC)/N, evaluated on the released counts (negatives clipped to 0).
    """
    if count_sigma <= 0:
        return 0.0
    pos, neg = np.clip(total.positives, 0, None), np.clip(total.negatives, 0, None)
    n_pos, n_neg = max(float(pos.sum()), 1.0), max(float(neg.sum()), 1.0)
    negatives_below = (np.cumsum(neg) - neg + neg / 2) / n_neg
    positives_above = (pos.sum() - np.cumsum(pos) + pos / 2) / n_pos
    auc = float(np.dot(pos, negatives_below) / n_pos)
    variance = np.sum(((negatives_below - auc) / n_pos) ** 2) + np.sum(((positives_above - auc) / n_neg) ** 2)
    return float(count_sigma * math.sqrt(variance))
