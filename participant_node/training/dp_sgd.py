"""Local training with DP-SGD through Opacus: Poisson sampling, per-example clipping, Gaussian noise.

One example per member, so clipping each example's gradient bounds each member's influence on a
step and the (ε, δ) of the accountant is member-level (Abadi et al., "Deep Learning with
Differential Privacy", CCS 2016). Opacus's ``make_private`` turns the loader into a Poisson
sampler with rate q = 1 / len(loader) (Mironov et al. 2019 analyse exactly that sampling).

The FedProx proximal term (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys
2020) depends only on the current and the global weights, not on any member: it is applied as a
separate step after the private one, which is post-processing and costs no privacy.

Logistic regression may be trained with its intercept's input scaled down
(``DpSgdSettings.intercept_input``, `models.scaled_intercept`): the same logits, a smaller share of
the clipping budget for the intercept; the rule choosing the scale is `models.dp_schedule`'s.

The batches and the noise come from a generator seeded by the operating system, never from the job's
seed nor torch's fixed default: a coordinator that knew the noise could subtract it.
"""

from __future__ import annotations

import math
import secrets
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models.networks import LogisticRegression
from models.scaled_intercept import ScaledInterceptLogisticRegression

__all__ = ["DpSgdSettings", "LocalTrainStats", "poisson_sample_rate", "train_dp_sgd", "train_non_private"]


def poisson_sample_rate(n_examples: int, batch_size: int) -> float:
    """The rate Opacus uses for a loader of ``n_examples`` in batches of ``batch_size``: 1 / len(loader)."""
    if n_examples < 1 or batch_size < 1:
        raise ValueError(f"need positive sizes, got n={n_examples}, batch={batch_size}")
    return 1.0 / math.ceil(n_examples / batch_size)


@dataclass(frozen=True)
class DpSgdSettings:
    """The mechanism's parameters for one call (the accountant decides ``noise_multiplier``)."""

    noise_multiplier: float
    max_grad_norm: float
    learning_rate: float
    batch_size: int
    steps: int
    proximal_mu: float = 0.0
    # The intercept's input while training a logistic regression (1: the plain parametrisation).
    intercept_input: float = 1.0

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0 or self.max_grad_norm <= 0 or self.learning_rate <= 0:
            raise ValueError("noise_multiplier must be >= 0, max_grad_norm and learning_rate > 0")
        if not 0.0 < self.intercept_input <= 1.0:
            raise ValueError(f"intercept_input must be in (0, 1], got {self.intercept_input}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")


@dataclass(frozen=True)
class LocalTrainStats:
    sample_rate: float
    steps: int
    mean_loss: float


def train_dp_sgd(
    model: nn.Module, X: np.ndarray, y: np.ndarray, settings: DpSgdSettings, *, noise_seed: int | None = None
) -> LocalTrainStats:
    """Take ``settings.steps`` DP-SGD steps on ``model`` in place (its weights are updated).

    Parameters
    ----------
    model
        A fresh module holding the global weights; Opacus wraps it for the duration of the call.
    X, y
        Features (n x d, float32) and 0/1 labels of this node's training members.
    noise_seed
        Seeds the Poisson sampling and the Gaussian noise, for benchmarks that must repeat exactly;
        ``None`` (the default, and the only safe choice in production) draws it from the OS.
    """
    # Opacus draws both the batches and the noise from torch's global generator unless secure_mode is
    # on; that generator starts from a fixed, public seed in every process. Reseed it from the OS
    # (inside fork_rng, so the caller's stream is untouched): noise a coordinator could predict,
    # from the code or from the job's seed, could be subtracted from the update.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(secrets.randbits(63) if noise_seed is None else noise_seed)
        return _train_dp_sgd(model, X, y, settings)


def _train_dp_sgd(model: nn.Module, X: np.ndarray, y: np.ndarray, settings: DpSgdSettings) -> LocalTrainStats:
    if settings.intercept_input == 1.0:
        return _train_module(model, X, y, settings)
    if not isinstance(model, LogisticRegression):
        name = type(model).__name__
        raise ValueError(
            f"intercept_input {settings.intercept_input} applies to logistic regression, not {name}"
        )
    scaled = ScaledInterceptLogisticRegression(model, scale=settings.intercept_input)
    stats = _train_module(scaled, X, y, settings)
    scaled.write_back(model)
    return stats


def _train_module(model: nn.Module, X: np.ndarray, y: np.ndarray, settings: DpSgdSettings) -> LocalTrainStats:
    dataset = TensorDataset(
        torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(y))
    )
    loader = DataLoader(dataset, batch_size=settings.batch_size)
    global_params = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate)
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off (noise still comes from an OS-seeded generator) and
        # torch that the input needs no gradient; neither is actionable here.
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        private_model, private_optimizer, private_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=settings.noise_multiplier,
            max_grad_norm=settings.max_grad_norm,
            poisson_sampling=True,
        )
        losses = _private_steps(
            private_model, private_optimizer, private_loader, model, global_params, settings
        )
    private_model._close()  # detach Opacus hooks so ``model`` is a plain module again
    return LocalTrainStats(
        sample_rate=private_loader.sample_rate,
        steps=settings.steps,
        mean_loss=float(np.mean(losses)) if losses else float("nan"),
    )


def _private_steps(
    private_model: nn.Module,
    private_optimizer: torch.optim.Optimizer,
    private_loader: DataLoader,
    model: nn.Module,
    global_params: list[torch.Tensor],
    settings: DpSgdSettings,
) -> list[float]:
    loss_fn = nn.BCEWithLogitsLoss()
    losses: list[float] = []
    steps = 0
    while steps < settings.steps:
        for xb, yb in private_loader:
            private_optimizer.zero_grad()
            # An empty Poisson batch is still a step: Opacus gives zero per-example gradients and
            # the noise is added as usual, exactly what the accountant assumes.
            loss = loss_fn(private_model(xb), yb)
            loss.backward()
            if len(xb):
                losses.append(float(loss.detach()))
            private_optimizer.step()
            _proximal_step(model, global_params, settings)
            steps += 1
            if steps == settings.steps:
                break
    return losses


def _proximal_step(model: nn.Module, global_params: list[torch.Tensor], settings: DpSgdSettings) -> None:
    # w <- w - lr * mu * (w - w_global): the gradient of (mu/2)||w - w_global||^2, member-independent.
    if settings.proximal_mu == 0.0:
        return
    with torch.no_grad():
        for param, anchor in zip(model.parameters(), global_params, strict=True):
            param.sub_(settings.learning_rate * settings.proximal_mu * (param - anchor))


def train_non_private(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    learning_rate: float,
    batch_size: int,
    epochs: int,
    generator: torch.Generator | None = None,
) -> float:
    """Plain minibatch SGD for ``epochs`` (the non-private yardstick in benchmarks); returns the last loss."""
    dataset = TensorDataset(
        torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(y))
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    loss_fn = nn.BCEWithLogitsLoss()
    last = float("nan")
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            last = float(loss.detach())
    return last
