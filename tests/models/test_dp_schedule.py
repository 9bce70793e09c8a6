"""The DP-SGD schedule rule: its GDP maths against known values, and how it moves with its inputs."""

from __future__ import annotations

import math

import pytest

from models.dp_schedule import (
    MAX_BATCH,
    MAX_SAMPLE_RATE_FOR_LOOSE_CLIP,
    MIN_BATCH,
    dp_sgd_schedule,
    gdp_mu,
    intercept_input,
    rounded_member_count,
)
from models.task import ModelKind


def test_gdp_mu_known_values() -> None:
    # Dong, Roth & Su (2022): 1-GDP is (epsilon, delta)-DP with delta(1) = Phi(-1/2) - e Phi(-3/2) ~ 0.1269.
    assert gdp_mu(epsilon=1.0, delta=0.12693) == pytest.approx(1.0, abs=1e-3)
    assert gdp_mu(epsilon=3.0, delta=1e-5) < gdp_mu(epsilon=8.0, delta=1e-5)


def test_batch_is_the_one_at_sigma_one_within_its_bounds() -> None:
    small = dp_sgd_schedule([400, 420, 380], epsilon=3.0, delta=1e-5, task="churn")
    assert (
        small.batch_size == MIN_BATCH and small.max_grad_norm == 0.3 and small.noise_multiplier_estimate > 1
    )
    large = dp_sgd_schedule([80_000] * 3, epsilon=3.0, delta=1e-5, task="churn")
    assert MIN_BATCH < large.batch_size < MAX_BATCH
    assert large.noise_multiplier_estimate == pytest.approx(1.0, abs=0.01)
    assert large.max_grad_norm == 1.0  # noise negligible: a loose clip keeps the likelihood's fit
    assert small.learning_rate * small.max_grad_norm == pytest.approx(0.3)  # the task's clipped step
    assert large.learning_rate == 5.0  # unclipped logistic regression needs a step that converges
    assert dp_sgd_schedule([10**7] * 3, epsilon=8.0, delta=1e-5, task="churn").batch_size == MAX_BATCH
    assert dp_sgd_schedule([300, 100_000], epsilon=3.0, delta=1e-5, task="churn").batch_size <= 300


def test_rounded_counts_and_bad_inputs() -> None:
    assert [rounded_member_count(n) for n in (0, 7, 99, 412, 7_834, 123_456)] == [
        0,
        7,
        99,
        410,
        7_800,
        120_000,
    ]
    with pytest.raises(ValueError, match="at least 2"):
        dp_sgd_schedule([], epsilon=3.0, delta=1e-5, task="churn")
    with pytest.raises(ValueError, match="epsilon"):
        dp_sgd_schedule([1_000], epsilon=0.0, delta=1e-5, task="churn")
    assert math.isfinite(dp_sgd_schedule([2], epsilon=1.0, delta=1e-5, task="propensity").learning_rate)


def test_small_nodes_keep_the_tight_clip_at_any_epsilon() -> None:
    """A near-full batch (q > 1/8 at the smallest node) is outside the loose regime's central-limit
    reasoning: nodes of ~700 members stay tight even at ε = 8, 10^4-member nodes go loose from ε = 1."""
    for epsilon in (1.0, 3.0, 8.0):
        small = dp_sgd_schedule([700, 650, 850], epsilon=epsilon, delta=1e-5, task="churn", n_features=17)
        assert (small.max_grad_norm, small.local_steps) == (0.3, 5), epsilon
        large = dp_sgd_schedule(
            [8_000, 7_800, 8_100], epsilon=epsilon, delta=1e-5, task="churn", n_features=17
        )
        assert (large.max_grad_norm, large.local_steps) == (1.0, 20), epsilon
        assert large.batch_size / 7_800 <= MAX_SAMPLE_RATE_FOR_LOOSE_CLIP


def test_logistic_regression_on_standardised_features_trains_with_its_intercept_input_halved() -> None:
    assert (
        intercept_input(ModelKind.LOGREG, standardised=True)
        == intercept_input("logreg", standardised=True)
        == 0.5
    )
    # Not measured, so the plain parametrisation: the MLP, and the public scaling.
    assert intercept_input(ModelKind.MLP, standardised=True) == 1.0
    assert intercept_input(ModelKind.LOGREG, standardised=False) == 1.0
