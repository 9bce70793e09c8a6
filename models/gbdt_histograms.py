"""What a node releases while a tree grows: clipped logistic gradients summed per node and bin.

Newton boosting of the logistic loss (Friedman, "Greedy function approximation", 2001; Chen and
Guestrin, "XGBoost", KDD 2016) needs, per candidate split, the sums of the members' gradients g and
hessians h on each side. A member's g = p - y is clipped to [-clip, clip] and h = p (1 - p) lies in
[0, 1/4], so one member changes a (g, h) pair by at most sqrt(clip^2 + 1/16) in L2. At one depth
level a member sits in exactly one tree node and, per feature, in exactly one bin, so the level's
whole histogram (nodes x features x bins x 2) moves by at most sqrt(features) times that; the leaf
sums (leaves x 2) by that alone. The Gaussian noise of a release is its noise multiplier times
its sensitivity (Dwork and Roth, "The Algorithmic Foundations of Differential Privacy", §3.5.3).

Distributed noise: each of K nodes adds N(0, σ²/K) to its own sums, so the total the coordinator
receives under secure aggregation carries N(0, σ²), the noise the accountant assumes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "HESSIAN_BOUND",
    "add_node_noise",
    "leaf_sums",
    "level_histograms",
    "logistic_gradients",
    "pair_sensitivity",
]

# p (1 - p) <= 1/4 for every p in [0, 1].
HESSIAN_BOUND = 0.25


def logistic_gradients(logits: np.ndarray, y: np.ndarray, *, clip: float) -> tuple[np.ndarray, np.ndarray]:
    """Clipped gradient and hessian of the logistic loss at ``logits`` for labels ``y`` in {0, 1}."""
    if not 0.0 < clip <= 1.0:
        raise ValueError(f"gradient clip must be in (0, 1], got {clip}")
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    g = np.clip(p - np.asarray(y, dtype=np.float64), -clip, clip)
    return g, p * (1.0 - p)


def pair_sensitivity(clip: float) -> float:
    """L2 sensitivity of one member's (g, h) pair: sqrt(clip^2 + (1/4)^2)."""
    return math.hypot(clip, HESSIAN_BOUND)


def level_histograms(
    bins: np.ndarray, node: np.ndarray, g: np.ndarray, h: np.ndarray, *, n_nodes: int, n_bins: int
) -> np.ndarray:
    """Sums of (g, h) per (tree node, feature, bin) over members with ``node`` >= 0.

    Parameters
    ----------
    bins
        Coarse bins, n x d, each below ``n_bins``.
    node
        The tree node of each member at this level (0 .. n_nodes - 1), or -1 for a member not
        sampled for this tree.

    Returns
    -------
    np.ndarray
        Shape (n_nodes, d, n_bins, 2): [..., 0] the gradient sums, [..., 1] the hessian sums.
    """
    d = bins.shape[1]
    take = node >= 0
    cell = (node[take, None] * d + np.arange(d)) * n_bins + bins[take]
    size = n_nodes * d * n_bins
    out = np.empty((size, 2))
    out[:, 0] = np.bincount(cell.ravel(), weights=np.repeat(g[take], d), minlength=size)
    out[:, 1] = np.bincount(cell.ravel(), weights=np.repeat(h[take], d), minlength=size)
    return out.reshape(n_nodes, d, n_bins, 2)


def leaf_sums(node: np.ndarray, g: np.ndarray, h: np.ndarray, *, n_leaves: int) -> np.ndarray:
    """Sums of (g, h) per leaf over members with ``node`` >= 0: shape (n_leaves, 2)."""
    take = node >= 0
    return np.stack(
        [
            np.bincount(node[take], weights=g[take], minlength=n_leaves),
            np.bincount(node[take], weights=h[take], minlength=n_leaves),
        ],
        axis=1,
    )


def add_node_noise(sums: np.ndarray, *, sigma: float, n_nodes: int, rng: np.random.Generator) -> np.ndarray:
    """One node's share of the release noise: ``sums`` + N(0, sigma^2 / n_nodes) per coordinate."""
    if sigma < 0 or n_nodes < 1:
        raise ValueError(f"need sigma >= 0 and n_nodes >= 1, got {sigma}, {n_nodes}")
    if sigma == 0:
        return sums.copy()
    return sums + rng.normal(0.0, sigma / math.sqrt(n_nodes), size=sums.shape)
