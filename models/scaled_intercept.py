"""Logistic regression reparametrised for DP-SGD: the intercept's input is ``scale``, not 1.

Per-example clipping bounds the norm of the WHOLE gradient, intercept included (Abadi et al., "Deep
Learning with Differential Privacy", CCS 2016). A member's logistic gradient is (p - y) (x, 1): on
standardised features, whose squared norm is about one (``models.feature_standardisation``), the
intercept's input of 1 takes half of every clipped gradient's squared norm, for a coordinate that
carries no ranking information and whose gradient, the mean residual, points the same way for every
member. Feeding the intercept ``scale`` instead of 1 (and storing ``b / scale``) computes the same
logits and leaves the intercept the share scale² / (1 + scale²) of the clipping budget; the price is
a slower intercept (its step in ``b`` is scale² times as long). The rule choosing ``scale`` and its
measurements are in ``models.dp_schedule``.

Only how the optimiser sees the model changes: the mechanism (clip, Gaussian noise, accountant) is
the same, and ``write_back`` returns an ordinary `models.networks.LogisticRegression`.
"""

from __future__ import annotations

import torch
from torch import nn

from models.networks import LogisticRegression

__all__ = ["ScaledInterceptLogisticRegression"]


class ScaledInterceptLogisticRegression(nn.Module):
    """``model``'s weights and intercept in one bias-free linear layer over (x, scale).

    Parameters
    ----------
    model
        The logistic regression to train (not modified until `write_back`).
    scale
        The intercept's input, in (0, 1].
    """

    def __init__(self, model: LogisticRegression, *, scale: float) -> None:
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"the intercept's input scale must be in (0, 1], got {scale}")
        super().__init__()
        self.scale = scale
        n_features = model.linear.in_features
        self.linear = nn.Linear(n_features + 1, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(
                torch.cat([model.linear.weight, model.linear.bias.view(1, 1) / scale], dim=1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intercept_input = torch.full((x.shape[0], 1), self.scale, dtype=x.dtype, device=x.device)
        return self.linear(torch.cat([x, intercept_input], dim=1)).squeeze(-1)

    def write_back(self, model: LogisticRegression) -> LogisticRegression:
        """Copy the trained weights and intercept into ``model`` (same logits) and return it."""
        weight = self.linear.weight.detach()
        if weight.shape[1] != model.linear.in_features + 1:
            raise ValueError(
                f"the trained layer has {weight.shape[1] - 1} features, the model {model.linear.in_features}"
            )
        with torch.no_grad():
            model.linear.weight.copy_(weight[:, :-1])
            model.linear.bias.copy_(weight[:, -1] * self.scale)
        return model
