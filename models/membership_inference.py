"""Membership inference against a published model: the loss-threshold attack.

The attacker holds the published model and a member's features and label, and guesses that the
member was in the training set when the model's loss on it is low (Yeom, Giacomelli, Fredrikson &
Jha, "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF 2018). Its
success over every threshold at once is the ROC-AUC of the score ``-loss`` for training members
(positives) against held-out members of the same population (negatives): 0.5 means the model
leaks nothing this attack can read; DP-SGD at (epsilon, delta) bounds the attack's true-positive
rate by ``exp(epsilon) * FPR + delta`` at every false-positive rate.

The sets are balanced by subsampling the larger one (a fixed seed), so the AUC is not read off a
skewed prior; the sampling error of the AUC is reported beside it (Hanley & McNeil 1982).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from models.metrics import auc_standard_error, roc_auc, roc_points
from models.networks import predict_proba

__all__ = ["MembershipInferenceResult", "loss_attack"]

_EPS = 1e-12


@dataclass(frozen=True)
class MembershipInferenceResult:
    """The attack's ROC-AUC, its best advantage (max TPR - FPR), and the set sizes it used."""

    attack_auc: float
    attack_auc_standard_error: float
    advantage: float
    members: int
    non_members: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "attack_auc": round(self.attack_auc, 4),
            "attack_auc_standard_error": round(self.attack_auc_standard_error, 4),
            "advantage": round(self.advantage, 4),
            "members": self.members,
            "non_members": self.non_members,
        }


def loss_attack(
    model: nn.Module,
    members: tuple[np.ndarray, np.ndarray],
    non_members: tuple[np.ndarray, np.ndarray],
    *,
    seed: int = 0,
) -> MembershipInferenceResult:
    """Run the loss-threshold attack on ``(X, y)`` of training members and of held-out members.

    Raises ``ValueError`` when either set is empty.
    """
    (x_in, y_in), (x_out, y_out) = members, non_members
    size = min(len(y_in), len(y_out))
    if size == 0:
        raise ValueError("the attack needs at least one member and one non-member")
    rng = np.random.default_rng(seed)
    pick_in = rng.choice(len(y_in), size, replace=False)
    pick_out = rng.choice(len(y_out), size, replace=False)
    score_in = -_log_loss(y_in[pick_in], predict_proba(model, x_in[pick_in]))
    score_out = -_log_loss(y_out[pick_out], predict_proba(model, x_out[pick_out]))
    truth = np.r_[np.ones(size), np.zeros(size)]
    scores = np.r_[score_in, score_out]
    auc = roc_auc(truth, scores)
    fpr, tpr = roc_points(truth, scores)
    return MembershipInferenceResult(
        attack_auc=auc,
        attack_auc_standard_error=auc_standard_error(auc, size, size),
        advantage=float(np.max(tpr - fpr)),
        members=size,
        non_members=size,
    )


def _log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-example binary cross-entropy."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
