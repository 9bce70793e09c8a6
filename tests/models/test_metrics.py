"""Metrics against scikit-learn, histogram AUC against the exact AUC, fairness warnings, k-anonymity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import calibration as sk_calibration
from sklearn import metrics as sk

from models.metrics import (
    ScoreHistogram,
    auc_from_histograms,
    auc_standard_error,
    binary_metrics,
    brier,
    calibration_curve,
    fairness_gaps,
    k_anonymous_histogram,
    pr_auc,
    roc_auc,
    roc_points,
    small_bins,
)


def _data(seed: int, n: int = 2_000, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y - 1.0)))
    return y, (np.round(p, 2) if ties else p)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed: int, ties: bool) -> None:
    y, p = _data(seed, ties=ties)
    assert roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert pr_auc(y, p) == pytest.approx(sk.average_precision_score(y, p), abs=1e-12)
    assert brier(y, p) == pytest.approx(sk.brier_score_loss(y, p), abs=1e-12)
    fpr, tpr = roc_points(y, p)
    sk_fpr, sk_tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)
    assert np.trapezoid(tpr, fpr) == pytest.approx(np.trapezoid(sk_tpr, sk_fpr), abs=1e-12)


def test_auc_standard_error_hand_computed_and_against_bootstrap() -> None:
    # Hanley & McNeil (1982) eq. 2 by hand: A = 0.8, 50/50 -> Q1 = 2/3, Q2 = 0.7111,
    # SE = sqrt((0.16 + 49 * 0.02667 + 49 * 0.07111) / 2500) = 0.04450.
    assert auc_standard_error(0.8, 50, 50) == pytest.approx(0.04450, abs=5e-5)
    y, p = _data(7, n=600)
    rng = np.random.default_rng(0)
    boot = [roc_auc(y[i], p[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(400))]
    se = auc_standard_error(roc_auc(y, p), int(y.sum()), int(len(y) - y.sum()))
    assert se == pytest.approx(np.std(boot), rel=0.25)
    assert np.isnan(auc_standard_error(0.7, 0, 10))


def test_undefined_metrics_are_nan() -> None:
    assert np.isnan(roc_auc(np.ones(5), np.linspace(0, 1, 5)))
    assert np.isnan(pr_auc(np.zeros(5), np.linspace(0, 1, 5)))
    assert binary_metrics(np.array([0.0, 1.0]), np.array([0.2, 0.9]))["auc"] == 1.0


def test_calibration_curve_matches_sklearn_on_nonempty_bins() -> None:
    y, p = _data(3)
    curve = calibration_curve(y, p, n_bins=10)
    frac, mean = sk_calibration.calibration_curve(y, p, n_bins=10, strategy="uniform")
    seen = curve.counts > 0
    np.testing.assert_allclose(curve.fraction_positive[seen], frac, atol=1e-12)
    np.testing.assert_allclose(curve.mean_predicted[seen], mean, atol=1e-12)
    assert curve.counts.sum() == len(y)
    assert 0 <= curve.expected_calibration_error() <= 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_nodes=st.integers(1, 5))
def test_pooled_histogram_auc_is_exact_up_to_binning(seed: int, n_nodes: int) -> None:
    y, p = _data(seed, n=1_500)
    parts = np.array_split(np.arange(len(y)), n_nodes)
    hists = [ScoreHistogram.from_scores(y[i], p[i], n_bins=10_000) for i in parts]
    # Exactly the AUC of the binned scores, and within binning error of the raw AUC.
    binned = np.clip((p * 10_000).astype(int), 0, 9_999)
    assert auc_from_histograms(hists) == pytest.approx(sk.roc_auc_score(y, binned), abs=1e-12)
    assert auc_from_histograms(hists) == pytest.approx(sk.roc_auc_score(y, p), abs=2e-3)


def test_histograms_round_trip_and_refuse_mismatched_bins() -> None:
    h = ScoreHistogram.from_scores(*_data(4), n_bins=20)
    back = ScoreHistogram.from_dict(h.to_dict())
    np.testing.assert_array_equal(back.positives, h.positives)
    np.testing.assert_array_equal(back.negatives, h.negatives)
    with pytest.raises(ValueError, match="20 and 10 bins"):
        _ = h + ScoreHistogram.from_scores(*_data(4), n_bins=10)


def test_k_anonymous_histogram_merges_small_bins_and_keeps_counts() -> None:
    y, p = _data(5, n=300)
    h = ScoreHistogram.from_scores(y, p, n_bins=100)
    assert small_bins(h, 20).any()
    safe = k_anonymous_histogram(h, 20)
    assert not small_bins(safe, 20).any()
    assert safe.positives.sum() == h.positives.sum() and safe.negatives.sum() == h.negatives.sum()
    # Still on the common grid: it adds to another node's histogram, and AUC stays close.
    assert (safe + h).n_bins == 100
    assert auc_from_histograms(safe) == pytest.approx(roc_auc(y, p), abs=0.05)


def test_fairness_gap_warning_over_fifteen_points() -> None:
    rng = np.random.default_rng(6)
    n = 4_000
    group = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
    y = (rng.random(n) < 0.3).astype(float)
    signal = np.where(group == "a", 2.5, 0.2)  # the model separates group a far better
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + signal * y - 1)))
    tiny = np.array(["a", "b", "c"] * (n // 3) + ["a"] * (n % 3), dtype=object)
    tiny[:5] = "rare"
    gaps = {g.attribute: g for g in fairness_gaps(y, p, {"segment": group, "tiny": tiny})}
    assert gaps["segment"].auc_gap > 0.15 and gaps["segment"].warning
    assert set(gaps["segment"].auc_by_group) == {"a", "b"}
    assert gaps["tiny"].groups_suppressed == 1 and "rare" not in gaps["tiny"].auc_by_group
    assert not gaps["tiny"].warning
