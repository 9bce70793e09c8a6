"""Pooled metrics from summed fine score histograms against the exact metrics on the same members."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.metrics import brier, calibration_curve, pr_auc, roc_auc
from models.score_histogram_metrics import (
    FINE_BINS,
    FederatedScoreMetrics,
    ScoreHistogramTotal,
    gaussian_sigma,
    noisy_release_bins,
    score_histogram_vector,
)


def _members(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(-1.5, 1.0, n) + 1.2 * y)))
    return y, p


def test_summed_node_vectors_give_the_exact_metrics_within_a_thousandth() -> None:
    y, p = _members(3_000, 1)
    parts = np.array_split(np.arange(len(y)), 3)  # three nodes; only the sum is used
    total = ScoreHistogramTotal.from_vector(sum(score_histogram_vector(y[i], p[i]) for i in parts))
    metrics = FederatedScoreMetrics.of(total, k=20)
    assert metrics.auc == pytest.approx(roc_auc(y, p), abs=1e-3)
    assert metrics.pr_auc == pytest.approx(pr_auc(y, p), abs=2e-3)
    assert metrics.brier == pytest.approx(brier(y, p), abs=1e-9)
    assert metrics.n == 3_000 and metrics.base_rate == pytest.approx(y.mean())
    exact = calibration_curve(y, p, n_bins=10)
    for i, count in enumerate(metrics.calibration_counts):
        if count is None:
            assert exact.counts[i] < 20
        else:
            assert count == exact.counts[i]
            assert metrics.calibration_mean_predicted[i] == pytest.approx(exact.mean_predicted[i], abs=1e-9)
            assert metrics.calibration_fraction_positive[i] == pytest.approx(exact.fraction_positive[i])


@pytest.mark.parametrize("seed", range(20))
def test_pr_auc_stays_within_a_hundredth_when_a_weak_model_bunches_the_scores(seed: int) -> None:
    # A briefly trained model puts a few hundred held-out members within 0.1 of one another (the
    # secure-aggregation job: 438 members, 60 positives, scores 0.08-0.19); ties within a bin are
    # what binning costs average precision, and the grid keeps them rare.
    rng = np.random.default_rng(seed)
    y = (rng.random(438) < 60 / 438).astype(float)
    p = 1 / (1 + np.exp(-(-2.2 + 0.12 * rng.normal(size=438) + 0.15 * y * rng.random())))
    metrics = FederatedScoreMetrics.of(ScoreHistogramTotal.of(y, p), k=20)
    assert metrics.pr_auc == pytest.approx(pr_auc(y, p), abs=0.01)
    assert metrics.auc == pytest.approx(roc_auc(y, p), abs=0.01)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=40, max_value=400), st.integers(min_value=0, max_value=10**6))
def test_binned_auc_equals_the_exact_auc_of_scores_rounded_to_the_grid(n: int, seed: int) -> None:
    y, p = _members(n, seed)
    y[:2] = [0.0, 1.0]
    total = ScoreHistogramTotal.of(y, p)
    binned = np.minimum((p * FINE_BINS).astype(int), FINE_BINS - 1)
    assert FederatedScoreMetrics.of(total, k=20).auc == pytest.approx(roc_auc(y, binned), abs=1e-12)


def test_published_roc_steps_over_at_least_k_members() -> None:
    y, p = _members(500, 2)
    total = ScoreHistogramTotal.of(y, p)
    metrics = FederatedScoreMetrics.of(total, k=25)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    steps = np.diff(np.array(metrics.roc_tpr)) * n_pos + np.diff(np.array(metrics.roc_fpr)) * n_neg
    assert np.all(np.round(steps[:-1]) >= 25)
    assert metrics.roc_fpr[-1] == 1.0 and metrics.roc_tpr[-1] == 1.0


def test_too_few_members_or_one_class_is_refused() -> None:
    y, p = _members(10, 3)
    with pytest.raises(ValueError, match="k=20"):
        FederatedScoreMetrics.of(ScoreHistogramTotal.of(y, p), k=20)
    with pytest.raises(ValueError, match="both classes"):
        FederatedScoreMetrics.of(ScoreHistogramTotal.of(np.zeros(50), np.linspace(0, 1, 50)), k=20)
    with pytest.raises(ValueError, match="3 \\* bins"):
        ScoreHistogramTotal.from_vector(np.zeros(7))


def test_gaussian_sigma_matches_the_analytic_mechanism() -> None:
    # Balle & Wang (2018): the analytic sigma is below the classical sqrt(2 ln(1.25/delta)) / epsilon.
    sigma = gaussian_sigma(epsilon=1.0, delta=1e-5)
    assert 3.0 < sigma < np.sqrt(2 * np.log(1.25 / 1e-5))
    assert gaussian_sigma(epsilon=2.0, delta=1e-5) < sigma
    assert gaussian_sigma(epsilon=1.0, delta=1e-5, sensitivity=2.0) == pytest.approx(2 * sigma, rel=1e-6)


def test_noisy_release_uses_coarser_bins_for_fewer_members() -> None:
    sigma = gaussian_sigma(epsilon=1.0, delta=1e-5)
    small = noisy_release_bins(sigma=sigma, expected_members=500, base_rate=0.2)
    large = noisy_release_bins(sigma=sigma, expected_members=50_000, base_rate=0.2)
    assert FINE_BINS % small == 0 and small < large <= FINE_BINS
    y, p = _members(20_000, 4)
    total = ScoreHistogramTotal.of(y, p).coarsened(
        noisy_release_bins(sigma=sigma, expected_members=20_000, base_rate=0.2)
    )
    noisy = total.with_count_noise(sigma, np.random.default_rng(0))
    assert FederatedScoreMetrics.of(noisy, k=20).auc == pytest.approx(roc_auc(y, p), abs=0.01)
