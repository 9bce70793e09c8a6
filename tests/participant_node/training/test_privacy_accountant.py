"""The node's accountant: calibration never overshoots, ε agrees with Google's dp_accounting, caps hold."""

from __future__ import annotations

from pathlib import Path

import dp_accounting
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from participant_node.training.errors import PrivacyBudgetError
from participant_node.training.privacy_accountant import (
    NodePrivacyAccountant,
    calibrate_noise_multiplier,
    effective_delta,
    rdp_epsilon,
)


def dp_accounting_rdp_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """ε of ``steps`` Poisson-sampled Gaussian steps by Google's dp_accounting RDP accountant."""
    accountant = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(event, steps)
    return float(accountant.get_epsilon(delta))


def test_pinned_epsilon_of_the_demo_configuration() -> None:
    # 20 rounds x 10 steps, q = 1/7 (a store group of ~420 training members in batches of 64).
    sigma = calibrate_noise_multiplier(epsilon=3.0, delta=1e-5, sample_rate=1 / 7, steps=200)
    assert sigma == pytest.approx(3.21, abs=0.02)
    assert rdp_epsilon(noise_multiplier=sigma, sample_rate=1 / 7, steps=200, delta=1e-5) == pytest.approx(
        3.0, abs=0.01
    )


@pytest.mark.parametrize(
    ("epsilon", "rate", "steps"), [(1.0, 1 / 7, 200), (3.0, 1 / 7, 200), (8.0, 0.05, 500)]
)
def test_epsilon_agrees_with_dp_accounting_within_five_percent(
    epsilon: float, rate: float, steps: int
) -> None:
    sigma = calibrate_noise_multiplier(epsilon=epsilon, delta=1e-5, sample_rate=rate, steps=steps)
    ours = rdp_epsilon(noise_multiplier=sigma, sample_rate=rate, steps=steps, delta=1e-5)
    theirs = dp_accounting_rdp_epsilon(sigma, rate, steps, 1e-5)
    assert ours == pytest.approx(theirs, rel=0.05)


@settings(max_examples=3, deadline=None)
@given(epsilon=st.floats(1.0, 8.0), rate=st.floats(0.02, 0.3), steps=st.integers(1, 100))
def test_calibration_never_overshoots_the_target(epsilon: float, rate: float, steps: int) -> None:
    sigma = calibrate_noise_multiplier(epsilon=epsilon, delta=1e-5, sample_rate=rate, steps=steps)
    assert rdp_epsilon(noise_multiplier=sigma, sample_rate=rate, steps=steps, delta=1e-5) <= epsilon


def test_delta_is_never_above_one_over_n() -> None:
    assert effective_delta(1e-5, 1_000) == 1e-5
    assert effective_delta(1e-2, 400) == pytest.approx(1 / 400)
    with pytest.raises(ValueError, match="delta must be in"):
        effective_delta(0.0, 10)


def test_accountant_refuses_steps_beyond_the_job_cap_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "acc.json"
    sigma = calibrate_noise_multiplier(epsilon=2.0, delta=1e-5, sample_rate=0.1, steps=100)
    accountant = NodePrivacyAccountant(path)
    common = dict(
        dataset="north",
        purpose="analytics.churn_model",
        job_id="j1",
        noise_multiplier=sigma,
        sample_rate=0.1,
        delta=1e-5,
        epsilon_cap=2.0,
    )
    for _ in range(10):
        spent = accountant.charge(steps=10, **common)
    assert spent == pytest.approx(2.0, abs=0.02)
    with pytest.raises(PrivacyBudgetError, match="refuses to train further"):
        accountant.charge(steps=10, **common)
    reopened = NodePrivacyAccountant(path)
    assert reopened.steps_taken(dataset="north", purpose="analytics.churn_model", job_id="j1") == 100
    assert reopened.epsilon(dataset="north", purpose="analytics.churn_model", delta=1e-5) == pytest.approx(
        spent
    )
    assert reopened.epsilon(dataset="south", purpose="analytics.churn_model", delta=1e-5) == 0.0
