"""Pooled AUC from k-binned node histograms against the exact per-member AUC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from coordinator.federated_evaluation import Histogram, fairness_gaps, summarise
from participant_node.training.score_histogram import BASE_EDGES, binned_scores


def _node(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random(n) < 0.2).astype(float)
    logits = rng.normal(-1.5 + shift * labels, 1.0)
    return 1 / (1 + np.exp(-logits)), labels


def _histogram(name: str, scores: np.ndarray, labels: np.ndarray, k: int) -> Histogram:
    h = binned_scores(scores, labels, k=k)
    brier = float(np.mean((scores - labels) ** 2))
    return Histogram(name, h.edges, h.positives, h.negatives, brier)


def test_every_released_bin_holds_at_least_k_members() -> None:
    scores, labels = _node(np.random.default_rng(1), 137, 1.0)
    h = binned_scores(scores, labels, k=20)
    assert all(p + n >= 20 for p, n in zip(h.positives, h.negatives, strict=True))
    assert h.n == 137 and h.edges[0] == 0.0 and h.edges[-1] == 1.0
    with pytest.raises(ValueError, match="at least k=20"):
        binned_scores(scores[:19], labels[:19], k=20)


def test_unmerged_histograms_give_the_mann_whitney_auc_of_the_binned_scores() -> None:
    rng = np.random.default_rng(2)
    scores, labels = _node(rng, 2000, 1.2)
    hist = _histogram("a", scores, labels, k=1)
    bin_index = np.searchsorted(BASE_EDGES, scores, side="right")
    assert summarise([hist]).auc == pytest.approx(roc_auc_score(labels, bin_index), abs=1e-9)


def test_pooled_auc_from_k_binned_nodes_is_close_to_the_exact_auc() -> None:
    rng = np.random.default_rng(3)
    nodes = [_node(rng, n, 1.2) for n in (500, 450, 520, 480)]
    summary = summarise([_histogram(f"n{i}", s, y, k=20) for i, (s, y) in enumerate(nodes)])
    scores = np.concatenate([s for s, _ in nodes])
    labels = np.concatenate([y for _, y in nodes])
    assert summary.auc == pytest.approx(roc_auc_score(labels, scores), abs=0.01)
    # Merged top bins hide the precision of the very highest scores: PR-AUC is coarser than ROC-AUC.
    assert summary.pr_auc == pytest.approx(average_precision_score(labels, scores), abs=0.06)
    assert summary.n == 1950 and set(summary.node_auc) == {"n0", "n1", "n2", "n3"}
    assert summary.brier == pytest.approx(float(np.mean((scores - labels) ** 2)))


def test_fairness_gaps_from_group_histograms_flag_a_group_the_model_ranks_worse() -> None:
    rng = np.random.default_rng(4)
    good_s, good_y = _node(rng, 600, 2.0)
    poor_s, poor_y = _node(rng, 600, 0.3)
    overall = [_histogram("a", np.concatenate([good_s, poor_s]), np.concatenate([good_y, poor_y]), k=20)]
    groups = {
        "age_band": {
            "25-34": [_histogram("a", good_s, good_y, k=20)],
            "65+": [_histogram("a", poor_s, poor_y, k=20)],
        }
    }
    gaps = fairness_gaps(overall, groups)["age_band"]
    exact_gap = roc_auc_score(good_y, good_s) - roc_auc_score(poor_y, poor_s)
    assert gaps["auc_gap"] == pytest.approx(exact_gap, abs=0.03)
    assert gaps["warning"] is True and set(gaps["positive_rate_by_group"]) == {"25-34", "65+"}


def test_a_nodes_own_auc_is_the_exact_one_it_reports_not_its_coarse_histograms() -> None:
    rng = np.random.default_rng(5)
    scores, labels = _node(rng, 70, 1.2)  # a small node: its k=20 histogram has 3 bins
    exact = float(roc_auc_score(labels, scores))
    binned = _histogram("small", scores, labels, k=20)
    assert summarise([binned]).node_auc["small"] < exact - 0.01
    reported = Histogram(
        binned.partner_id, binned.edges, binned.positives, binned.negatives, binned.brier, exact
    )
    summary = summarise([reported])
    assert summary.node_auc["small"] == exact
    assert summary.auc == summarise([binned]).auc  # the pooled AUC stays the histograms' own
