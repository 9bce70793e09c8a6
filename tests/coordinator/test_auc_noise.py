"""The AUC's noise standard deviation (delta method) agrees with the spread of AUCs recomputed on
independently noised copies of the same histograms."""

from __future__ import annotations

import numpy as np

from coordinator.federated_evaluation import auc_noise_sd
from models.score_histogram_metrics import ScoreHistogramTotal


def _auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    below = np.cumsum(negatives) - negatives + negatives / 2
    return float(np.dot(positives, below) / (positives.sum() * negatives.sum()))


def test_the_delta_method_matches_monte_carlo_within_ten_percent() -> None:
    rng = np.random.default_rng(3)
    bins = np.linspace(0, 1, 41)
    positives = np.histogram(rng.beta(3, 2, 400), bins)[0].astype(float)
    negatives = np.histogram(rng.beta(2, 3, 1600), bins)[0].astype(float)
    zeros = np.zeros(len(positives))
    sigma = 4.0
    predicted = auc_noise_sd(ScoreHistogramTotal(positives, negatives, zeros, 0.0, 0.0), sigma)
    noisy = [
        _auc(positives + rng.normal(0, sigma, len(bins) - 1), negatives + rng.normal(0, sigma, len(bins) - 1))
        for _ in range(4_000)
    ]
    assert predicted > 0
    assert abs(predicted - float(np.std(noisy))) <= 0.1 * float(np.std(noisy))
    assert auc_noise_sd(ScoreHistogramTotal(positives, negatives, zeros, 0.0, 0.0), 0.0) == 0.0
