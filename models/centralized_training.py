"""Centralized, NON-PRIVATE training: the yardstick federated DP training is measured against.

It needs every example in one place, so it is only computable where one party legitimately holds all
the data (the retailer's own store groups, or the demo that owns all its synthetic partners). The
split is the shared one: `heldout_mask` members are never trained on, and early stopping uses a
second, equally deterministic validation split carved out of the training members, never the
held-out ones.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from models.metrics import binary_metrics
from models.networks import make_model, predict_proba
from models.task import ModelKind
from models.task_dataset import TaskDataset, heldout_mask

__all__ = ["VALIDATION_SALT", "train_centralized"]

VALIDATION_SALT = "loyalfed-validation-v1"


def train_centralized(
    dataset: TaskDataset,
    *,
    kind: ModelKind | str,
    epochs: int = 60,
    lr: float = 0.01,
    seed: int = 0,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    hidden: int = 32,
    patience: int = 10,
) -> tuple[nn.Module, dict[str, float]]:
    """Train on the non-held-out members with Adam, early stopping on validation ROC-AUC.

    Parameters
    ----------
    dataset
        All examples; the held-out members (`heldout_mask`, 20 %) are set aside here.
    kind
        ``"logreg"`` or ``"mlp"``.
    epochs, lr, batch_size, weight_decay, hidden
        Optimisation settings (full passes over the training members).
    seed
        Seeds initialisation and shuffling; the splits do not depend on it.
    patience
        Epochs without a better validation AUC before stopping.

    Returns
    -------
    tuple
        The model at its best validation epoch (eval mode) and held-out metrics: ``auc``, ``pr_auc``,
        ``brier``, ``n``, ``base_rate``, plus ``validation_auc``, ``best_epoch``, ``n_train``.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    heldout = heldout_mask(dataset.member_ids)
    train = dataset.subset(~heldout)
    validation_mask = heldout_mask(train.member_ids, fraction=0.2, salt=VALIDATION_SALT)
    fit, validation = train.subset(~validation_mask), train.subset(validation_mask)
    torch.manual_seed(seed)
    model = make_model(kind, dataset.X.shape[1], hidden=hidden)
    best_state, best_auc, best_epoch = _fit(
        model, fit, validation, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size,
        weight_decay=weight_decay, patience=patience,
    )
    model.load_state_dict(best_state)
    model.eval()
    test = dataset.subset(heldout)
    metrics = binary_metrics(test.y, predict_proba(model, test.X))
    metrics.update(validation_auc=best_auc, best_epoch=float(best_epoch), n_train=float(len(fit)))
    return model, metrics


def _fit(
    model: nn.Module,
    fit: TaskDataset,
    validation: TaskDataset,
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int,
    weight_decay: float,
    patience: int,
) -> tuple[dict[str, torch.Tensor], float, int]:
    """Mini-batch Adam on BCE-with-logits; return the best state by validation AUC."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    X, y = torch.as_tensor(fit.X), torch.as_tensor(fit.y)
    rng = np.random.default_rng(seed)
    best_state, best_auc, best_epoch = copy.deepcopy(model.state_dict()), -np.inf, 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.as_tensor(rng.permutation(len(fit)))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimiser.zero_grad()
            loss_fn(model(X[batch]), y[batch]).backward()
            optimiser.step()
        auc = binary_metrics(validation.y, predict_proba(model, validation.X))["auc"]
        if np.isfinite(auc) and auc > best_auc:
            best_state, best_auc, best_epoch = copy.deepcopy(model.state_dict()), float(auc), epoch
        elif epoch - best_epoch >= patience:
            break
    return best_state, float(best_auc), best_epoch
