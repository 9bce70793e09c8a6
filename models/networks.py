"""The two networks: logistic regression and a small MLP, both Opacus-compatible.

Both return LOGITS of shape ``(batch,)``; train with `torch.nn.BCEWithLogitsLoss` (numerically
stable log-sigmoid) and apply `torch.sigmoid` to score. Only `torch.nn.Linear` layers and ReLU:
no BatchNorm (it mixes examples in a batch and so breaks per-example gradients, see Opacus's
`ModuleValidator`), which keeps per-example clipping in DP-SGD exact (Abadi et al., "Deep Learning
with Differential Privacy", CCS 2016).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.task import ModelKind

__all__ = ["MLP", "LogisticRegression", "make_model", "predict_proba"]


class LogisticRegression(nn.Module):
    """One linear layer; the sigmoid lives in the loss."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLP(nn.Module):
    """Two hidden ReLU layers of width ``hidden`` and a linear output."""

    def __init__(self, n_features: int, hidden: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


def make_model(kind: ModelKind | str, n_features: int, *, hidden: int = 32) -> nn.Module:
    """Build a fresh, randomly initialised network (seed torch beforehand for reproducibility).

    Parameters
    ----------
    kind
        ``"logreg"`` or ``"mlp"``.
    n_features
        Width of the input (``schema.n_features``).
    hidden
        Width of the MLP's hidden layers (ignored for logistic regression).
    """
    if n_features <= 0:
        raise ValueError(f"n_features must be positive, got {n_features}")
    kind = ModelKind(kind)
    if kind is ModelKind.LOGREG:
        return LogisticRegression(n_features)
    if hidden <= 0:
        raise ValueError(f"hidden must be positive, got {hidden}")
    return MLP(n_features, hidden)


def predict_proba(model: nn.Module, X: np.ndarray, *, batch_size: int = 65_536) -> np.ndarray:
    """Probabilities (sigmoid of the logits) for the rows of ``X``, as float64, without gradients."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            batch = torch.as_tensor(np.asarray(X[start : start + batch_size], dtype=np.float32))
            out.append(torch.sigmoid(model(batch)).double().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)
