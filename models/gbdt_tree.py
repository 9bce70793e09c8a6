"""Complete binary trees on coarse bins: splits chosen from summed histograms, leaf values, scoring.

A tree of depth D is complete and stored in heap order: node i of level l (0 .. 2^l - 1) sends a
member to child 2 i when its bin of ``features[l][i]`` is at most ``thresholds[l][i]``, else to
2 i + 1; the 2^D leaves carry values. A node that should not split gets threshold = the last bin,
so every member goes left. The split maximises the Newton gain of the logistic loss (Chen and
Guestrin, "XGBoost", KDD 2016, eq. 7) G_L^2/(H_L+λ) + G_R^2/(H_R+λ) - G^2/(H+λ), computed from the
coordinator's summed (possibly noisy) histograms only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.gbdt_binning import BinEdges

__all__ = ["GbdtModel", "Tree", "best_splits", "leaf_values", "route"]


@dataclass(frozen=True)
class Tree:
    """One tree: per level the split feature and bin threshold of every node, then leaf values."""

    features: tuple[np.ndarray, ...]
    thresholds: tuple[np.ndarray, ...]
    leaves: np.ndarray

    def __post_init__(self) -> None:
        if len(self.features) != len(self.thresholds) or len(self.leaves) != 2 ** len(self.features):
            raise ValueError(f"a depth-{len(self.features)} tree needs {2 ** len(self.features)} leaves")

    @property
    def depth(self) -> int:
        return len(self.features)

    def leaf_index(self, bins: np.ndarray) -> np.ndarray:
        """The leaf of every member of ``bins`` (n x d coarse bins)."""
        node = np.zeros(len(bins), dtype=np.int64)
        for features, thresholds in zip(self.features, self.thresholds, strict=True):
            node = route(bins, node, features, thresholds)
        return node


def route(bins: np.ndarray, node: np.ndarray, features: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each member's node at the next level (members at node -1 stay at -1)."""
    take = node >= 0
    out = np.full_like(node, -1)
    at = node[take]
    right = bins[take, features[at]] > thresholds[at]
    out[take] = 2 * at + right
    return out


def best_splits(
    histograms: np.ndarray, edges: BinEdges, *, reg_lambda: float, min_child_hessian: float
) -> tuple[np.ndarray, np.ndarray]:
    """The (feature, threshold) of highest gain for every node of a level.

    ``histograms`` is the coordinator's sum, shape (nodes, d, bins, 2). A child whose hessian sum is
    below ``min_child_hessian`` is not a candidate; a node without any candidate of positive gain
    does not split (threshold = its feature's last bin).
    """
    n_nodes, _, n_bins, _ = histograms.shape
    left = np.cumsum(histograms, axis=2)[:, :, :-1, :]
    total = histograms.sum(axis=2, keepdims=True)
    right = total - left
    gain = _score(left, reg_lambda) + _score(right, reg_lambda) - _score(total, reg_lambda)
    valid = (left[..., 1] >= min_child_hessian) & (right[..., 1] >= min_child_hessian)
    valid &= np.arange(n_bins - 1)[None, None, :] < _bins_per_feature(edges)[None, :, None] - 1
    gain = np.where(valid, gain, -np.inf).reshape(n_nodes, -1)
    best = gain.argmax(axis=1)
    features, thresholds = np.divmod(best, n_bins - 1)
    no_split = ~(gain[np.arange(n_nodes), best] > 0)
    thresholds = np.where(no_split, n_bins - 1, thresholds)
    return features.astype(np.int64), thresholds.astype(np.int64)


def leaf_values(sums: np.ndarray, *, reg_lambda: float, bound: float) -> np.ndarray:
    """Newton leaf values -G / (H + λ) from summed (possibly noisy) ``sums`` (leaves x 2), bounded.

    A noisy hessian sum can be negative: it counts as 0, so λ alone keeps the step finite, and the
    value is clipped to [-bound, bound].
    """
    g, h = sums[:, 0], np.clip(sums[:, 1], 0.0, None)
    return np.clip(-g / (h + reg_lambda), -bound, bound)


def _score(sums: np.ndarray, reg_lambda: float) -> np.ndarray:
    g, h = sums[..., 0], np.clip(sums[..., 1], 0.0, None)
    return np.asarray(g**2 / (h + reg_lambda))


def _bins_per_feature(edges: BinEdges) -> np.ndarray:
    return np.array([edges.n_bins(f) for f in range(edges.n_features)])


@dataclass(frozen=True)
class GbdtModel:
    """A boosted ensemble: bin edges, trees and the shrinkage applied to every leaf value."""

    edges: BinEdges
    trees: tuple[Tree, ...]
    learning_rate: float
    base_logit: float = 0.0

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The logit of every row of ``X`` (n x d, on the schema's [0, 1] scale)."""
        return self.logits_from_bins(self.edges.bin(X))

    def logits_from_bins(self, bins: np.ndarray) -> np.ndarray:
        out = np.full(len(bins), self.base_logit)
        for tree in self.trees:
            out += self.learning_rate * tree.leaves[tree.leaf_index(bins)]
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1) for every row of ``X``."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))
