"""Local DP-SGD: noise nobody can predict by default, reproducible only on request, FedProx damping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.networks import make_model
from participant_node.training.dp_sgd import DpSgdSettings, poisson_sample_rate, train_dp_sgd

X = np.random.default_rng(0).random((300, 8), dtype=np.float32)
Y = (X[:, 0] > 0.5).astype(np.float32)
SETTINGS = DpSgdSettings(noise_multiplier=1.0, max_grad_norm=1.0, learning_rate=1.0, batch_size=64, steps=5)


def _weights(noise_seed: int | None, settings: DpSgdSettings = SETTINGS) -> np.ndarray:
    torch.manual_seed(0)  # the same starting model every time
    model = make_model("logreg", X.shape[1])
    stats = train_dp_sgd(model, X, Y, settings, noise_seed=noise_seed)
    assert stats.steps == settings.steps and stats.sample_rate == poisson_sample_rate(len(X), 64) == 0.2
    return model.linear.weight.detach().numpy().copy()


def test_noise_is_drawn_from_the_os_not_from_torchs_public_default_seed() -> None:
    # Two fresh draws from the same starting point differ, so the noise is not a function of the
    # model, the job seed or torch's fixed default seed.
    assert not np.allclose(_weights(None), _weights(None))
    assert np.allclose(_weights(11), _weights(11))


def test_training_leaves_the_callers_random_stream_alone() -> None:
    model = make_model("logreg", X.shape[1])
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train_dp_sgd(model, X, Y, SETTINGS)
    assert torch.equal(torch.rand(3), expected)


def test_fedprox_keeps_the_update_closer_to_the_global_model() -> None:
    plain = np.linalg.norm(_weights(3) - _start())
    prox = DpSgdSettings(**{**SETTINGS.__dict__, "proximal_mu": 0.5})
    assert np.linalg.norm(_weights(3, prox) - _start()) < plain


def _start() -> np.ndarray:
    torch.manual_seed(0)
    return make_model("logreg", X.shape[1]).linear.weight.detach().numpy().copy()


def test_a_scaled_intercept_moves_the_weights_as_before_and_the_intercept_by_its_square() -> None:
    # One full-batch step without noise or clipping: the intercept's gradient is s * mean(p - y) on
    # the stored b / s, so the intercept moves s^2 as far; the weights do not notice.
    exact = DpSgdSettings(noise_multiplier=0.0, max_grad_norm=1e6, learning_rate=0.5, batch_size=300, steps=1)
    plain, scaled = _step(exact), _step(DpSgdSettings(**{**exact.__dict__, "intercept_input": 0.5}))
    assert np.allclose(plain[0], scaled[0], atol=1e-6)
    assert scaled[1] == pytest.approx(0.25 * plain[1], rel=1e-5)


def test_a_scaled_intercept_leaves_the_weights_more_of_a_tight_clip() -> None:
    # Every gradient clipped: the intercept's share of the clipping norm shrinks, the weights' grows.
    tight = DpSgdSettings(
        noise_multiplier=0.0, max_grad_norm=1e-3, learning_rate=1.0, batch_size=300, steps=1
    )
    plain, scaled = _step(tight), _step(DpSgdSettings(**{**tight.__dict__, "intercept_input": 0.5}))
    # (Here ||x||^2 is about 8/3, so the weights get sqrt((8/3 + 1) / (8/3 + 1/4)), ~12 % more at most.)
    assert np.linalg.norm(scaled[0]) > 1.05 * np.linalg.norm(plain[0])


def test_intercept_input_is_refused_outside_zero_one_and_for_other_networks() -> None:
    with pytest.raises(ValueError, match="intercept_input must be in"):
        DpSgdSettings(**{**SETTINGS.__dict__, "intercept_input": 0.0})
    with pytest.raises(ValueError, match="applies to logistic regression, not MLP"):
        scaled = DpSgdSettings(**{**SETTINGS.__dict__, "intercept_input": 0.5})
        train_dp_sgd(make_model("mlp", X.shape[1]), X, Y, scaled)


def _step(settings: DpSgdSettings) -> tuple[np.ndarray, float]:
    """The change of the weights and of the intercept after ``settings``' steps from a fixed start."""
    torch.manual_seed(0)
    model = make_model("logreg", X.shape[1])
    weight, bias = model.linear.weight.detach().clone(), float(model.linear.bias)
    train_dp_sgd(model, X, Y, settings, noise_seed=1)
    return (model.linear.weight.detach() - weight).numpy(), float(model.linear.bias) - bias
