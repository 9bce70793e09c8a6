"""Centralized, NON-PRIVATE training: the yardstick federated DP training is measured against.

It needs every example in one place, so it is only computable where one party legitimately holds all
the data (the retailer's own store groups, or the demo that owns all its synthetic partners). The
split is the shared one: `heldout_mask` members are never trained on; anything chosen during
training is chosen on a second, equally deterministic validation split of the training members.

* Logistic regression is fitted to convergence with full-batch L-BFGS on the mean log-loss plus an
  L2 penalty ``||w||^2 / (2 n)``, the objective of scikit-learn's ``LogisticRegression(C=1)``
  (Liu & Nocedal, "On the limited memory BFGS method for large scale optimization", Math.
  Programming 45, 1989). Convex, so no epoch count to choose and no dependence on the seed.
* The MLP is trained with mini-batch Adam; the number of epochs is chosen by early stopping on the
  validation split, then the model is refitted on all training members for that many epochs, the
  usual "select, then refit" protocol (Hastie, Tibshirani & Friedman, *The Elements of Statistical
  Learning*, 2nd ed., §7.10).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from torch import nn

from models.metrics import binary_metrics
from models.networks import LogisticRegression, make_model, predict_proba
from models.task import ModelKind
from models.task_dataset import TaskDataset, heldout_mask

__all__ = ["VALIDATION_SALT", "train_centralized"]

VALIDATION_SALT = "loyalfed-validation-v1"
_LBFGS_ITERATIONS = 200


def train_centralized(
    dataset: TaskDataset,
    *,
    kind: ModelKind | str,
    epochs: int = 40,
    lr: float = 0.02,
    seed: int = 0,
    batch_size: int = 256,
    weight_decay: float = 1e-4,
    hidden: int = 32,
    patience: int = 8,
) -> tuple[nn.Module, dict[str, float]]:
    """Train on the non-held-out members and score the held-out ones.

    Parameters
    ----------
    dataset
        All examples; the held-out members (`heldout_mask`, 20 %) are set aside here.
    kind
        ``"logreg"`` (L-BFGS, see module docstring) or ``"mlp"`` (Adam).
    epochs, lr, batch_size, weight_decay, hidden, patience
        MLP settings: at most ``epochs`` passes, stop after ``patience`` epochs without a better
        validation AUC.
    seed
        Seeds initialisation and shuffling; the splits do not depend on it.

    Returns
    -------
    tuple
        The model (eval mode) and held-out metrics: ``auc``, ``pr_auc``, ``brier``, ``n``,
        ``base_rate``, plus ``validation_auc``, ``best_epoch`` (0 for logistic regression) and
        ``n_train``.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    kind = ModelKind(kind)
    heldout = heldout_mask(dataset.member_ids)
    train = dataset.subset(~heldout)
    validation_mask = heldout_mask(train.member_ids, fraction=0.2, salt=VALIDATION_SALT)
    fit, validation = train.subset(~validation_mask), train.subset(validation_mask)
    with _one_thread():
        torch.manual_seed(seed)
        if kind is ModelKind.LOGREG:
            validation_auc, best_epoch = _auc(_logreg(fit), validation), 0
            model = _logreg(train)
        else:
            adam = partial(_adam, lr=lr, seed=seed, batch_size=batch_size, weight_decay=weight_decay)
            selection = make_model(kind, dataset.X.shape[1], hidden=hidden)
            validation_auc, best_epoch = adam(selection, fit, validation, epochs=epochs, patience=patience)
            torch.manual_seed(seed)
            model = make_model(kind, dataset.X.shape[1], hidden=hidden)
            adam(model, train, None, epochs=best_epoch, patience=epochs)
    model.eval()
    test = dataset.subset(heldout)
    metrics = binary_metrics(test.y, predict_proba(model, test.X))
    metrics.update(validation_auc=validation_auc, best_epoch=float(best_epoch), n_train=float(len(train)))
    return model, metrics


@contextmanager
def _one_thread() -> Iterator[None]:
    """Models this small run faster on one intra-op thread (no synchronisation per tiny matmul), and a
    shared machine is not oversubscribed; the previous setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _auc(model: nn.Module, data: TaskDataset) -> float:
    return binary_metrics(data.y, predict_proba(model, data.X))["auc"]


def _logreg(train: TaskDataset) -> nn.Module:
    """Full-batch L-BFGS on mean log-loss + ||w||^2 / (2n) (bias not penalised), from zero weights."""
    model = LogisticRegression(train.X.shape[1])
    for parameter in model.parameters():
        nn.init.zeros_(parameter)
    X, y = torch.as_tensor(train.X), torch.as_tensor(train.y)
    l2 = 1.0 / max(len(train), 1)
    weight = model.linear.weight
    optimiser = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=_LBFGS_ITERATIONS,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )
    loss_fn = nn.BCEWithLogitsLoss()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(model(X), y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return model


def _adam(
    model: nn.Module,
    fit: TaskDataset,
    validation: TaskDataset | None,
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int,
    weight_decay: float,
    patience: int,
) -> tuple[float, int]:
    """Mini-batch Adam on BCE-with-logits; return the best validation AUC and its epoch.

    Without a validation set, train for exactly ``epochs`` epochs (the refit).
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    X, y = torch.as_tensor(fit.X), torch.as_tensor(fit.y)
    rng = np.random.default_rng(seed)
    best_auc, best_epoch = float("nan"), epochs
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.as_tensor(rng.permutation(len(fit)))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimiser.zero_grad()
            loss_fn(model(X[batch]), y[batch]).backward()
            optimiser.step()
        if validation is None:
            continue
        auc = _auc(model, validation)
        if np.isfinite(auc) and not auc <= best_auc:  # also true while best_auc is still NaN
            best_auc, best_epoch = float(auc), epoch
        elif epoch - best_epoch >= patience:
            break
    return best_auc, best_epoch
