"""Federated gradient-boosted trees under member-level DP: the node's side and the coordinator's loop.

Histogram GBDT (Chen and Guestrin, "XGBoost", KDD 2016) split across nodes the way federated DP
GBDT is (Maddock et al., "Federated Boosted Decision Trees with Differential Privacy", CCS 2022):
a node (`GbdtNode`) keeps its members' bins, labels and running logits and only ever releases sums
with its share of Gaussian noise (`models.gbdt_histograms`); the coordinator (`train_dp_gbdt`) sums
the nodes' releases -- the total is what secure aggregation gives it --, cuts the bins, picks the
splits, sets the leaf values and tells the nodes. Two split rules:

* ``SplitRule.GAIN``: one noisy histogram of (g, h) per depth level, the split of highest gain;
* ``SplitRule.RANDOM``: a feature and a bin threshold drawn by the coordinator at random (Geurts et
  al., "Extremely randomized trees", 2006), so only the leaves spend privacy; Maddock et al. found
  these trees the better use of a small budget.

Every release is a Gaussian mechanism of one noise multiplier, calibrated so that the whole training
-- bins, every tree's levels and leaves -- stays within (ε, δ) (`models.gbdt_accounting`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.gbdt_accounting import GbdtReleases, calibrate_gbdt_noise, gbdt_epsilon
from models.gbdt_binning import BinEdges, fine_cells, marginal_counts, quantile_edges, uniform_edges
from models.gbdt_histograms import (
    add_node_noise,
    leaf_sums,
    level_histograms,
    logistic_gradients,
    pair_sensitivity,
)
from models.gbdt_tree import GbdtModel, Tree, best_splits, leaf_values, route

__all__ = ["GbdtNode", "GbdtParams", "GbdtTraining", "SplitRule", "train_dp_gbdt"]


class SplitRule(StrEnum):
    """How a tree node chooses its split."""

    GAIN = "gain"  # from the noisy level histograms
    RANDOM = "random"  # at random, spending no privacy


class GbdtParams(BaseModel):
    """Hyperparameters of a training (public: they are chosen without looking at member data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trees: int = Field(default=20, ge=1, le=1000)
    depth: int = Field(default=3, ge=1, le=8)
    learning_rate: float = Field(default=0.3, gt=0, le=1)
    split: SplitRule = SplitRule.GAIN
    fine_bins: int = Field(default=64, ge=2, le=4096)
    max_bins: int = Field(default=16, ge=2, le=256)
    private_bins: bool = True  # cut bins at noisy quantiles; False: equal runs of the public grid
    grad_clip: float = Field(default=1.0, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    min_child_hessian: float = Field(default=1.0, ge=0)
    leaf_bound: float = Field(default=2.0, gt=0)
    sample_rate: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _bins_fit_the_grid(self) -> GbdtParams:
        if self.max_bins > self.fine_bins:
            raise ValueError(f"max_bins {self.max_bins} exceeds fine_bins {self.fine_bins}")
        return self

    def releases(self) -> GbdtReleases:
        per_tree = (self.depth if self.split is SplitRule.GAIN else 0) + 1
        return GbdtReleases(
            trees=self.trees,
            releases_per_tree=per_tree,
            bin_releases=int(self.private_bins),
            sample_rate=self.sample_rate,
        )


class GbdtNode:
    """One node's private state: its training members' public-grid cells, labels and logits.

    Nothing here leaves the node except the return values of the ``*_release`` methods, which are
    sums with the node's share of the release noise.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, fine_bins: int) -> None:
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(
                f"a node needs as many labels as rows and at least one, got {len(X)} and {len(y)}"
            )
        self._cells = fine_cells(X, fine_bins)
        self._fine_bins = fine_bins
        self._y = np.asarray(y, dtype=np.float64)
        self._logits = np.zeros(len(y))
        self._bins = self._cells
        self._node = np.zeros(len(y), dtype=np.int64)

    def counts_release(self, *, sigma: float, n_nodes: int, rng: np.random.Generator) -> np.ndarray:
        """Members per (feature, fine cell), noised: sensitivity sqrt(d)."""
        return add_node_noise(
            marginal_counts(self._cells, self._fine_bins), sigma=sigma, n_nodes=n_nodes, rng=rng
        )

    def use_edges(self, edges: BinEdges) -> None:
        self._bins = edges.coarse(self._cells)

    def start_tree(self, *, sample_rate: float, rng: np.random.Generator) -> None:
        """Draw the tree's Poisson sample of members (node 0) and leave the others out (-1)."""
        sampled = rng.random(len(self._y)) < sample_rate if sample_rate < 1 else np.ones(len(self._y), bool)
        self._node = np.where(sampled, 0, -1)

    def level_release(
        self,
        *,
        n_nodes: int,
        n_bins: int,
        clip: float,
        sigma: float,
        n_parties: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """The level's (g, h) histogram over the sampled members, noised."""
        g, h = logistic_gradients(self._logits, self._y, clip=clip)
        sums = level_histograms(self._bins, self._node, g, h, n_nodes=n_nodes, n_bins=n_bins)
        return add_node_noise(sums, sigma=sigma, n_nodes=n_parties, rng=rng)

    def apply_splits(self, features: np.ndarray, thresholds: np.ndarray) -> None:
        self._node = route(self._bins, self._node, features, thresholds)

    def leaf_release(
        self, *, n_leaves: int, clip: float, sigma: float, n_parties: int, rng: np.random.Generator
    ) -> np.ndarray:
        """The (g, h) sums per leaf over the sampled members, noised."""
        g, h = logistic_gradients(self._logits, self._y, clip=clip)
        return add_node_noise(
            leaf_sums(self._node, g, h, n_leaves=n_leaves), sigma=sigma, n_nodes=n_parties, rng=rng
        )

    def finish_tree(self, tree: Tree, learning_rate: float) -> None:
        """Add the finished tree's shrunk values to EVERY member's logit (sampled or not)."""
        self._logits += learning_rate * tree.leaves[tree.leaf_index(self._bins)]


@dataclass(frozen=True)
class GbdtTraining:
    """A trained model and what it cost: the noise multiplier and the ε it spent at δ."""

    model: GbdtModel
    params: GbdtParams
    noise_multiplier: float
    epsilon: float
    delta: float
    releases: GbdtReleases


def train_dp_gbdt(
    nodes: Sequence[tuple[np.ndarray, np.ndarray]],
    params: GbdtParams,
    *,
    epsilon: float | None,
    delta: float,
    rng: np.random.Generator,
) -> GbdtTraining:
    """Train across ``nodes`` (each its own (X, y), X on the schema's [0, 1] scale).

    ``epsilon=None`` trains without noise (ε infinite): the non-private reference, identical to a
    centralized histogram GBDT on the pooled members with the same bins.
    """
    if not nodes:
        raise ValueError("training needs at least one node")
    releases = params.releases()
    z = 0.0 if epsilon is None else calibrate_gbdt_noise(epsilon=epsilon, delta=delta, releases=releases)
    parties = [GbdtNode(X, y, fine_bins=params.fine_bins) for X, y in nodes]
    d = nodes[0][0].shape[1]
    edges = _edges(parties, params, sigma=z * math.sqrt(d), d=d, rng=rng)
    for party in parties:
        party.use_edges(edges)
    trees = tuple(_grow_tree(parties, edges, params, z=z, rng=rng) for _ in range(params.trees))
    model = GbdtModel(edges=edges, trees=trees, learning_rate=params.learning_rate)
    spent = math.inf if epsilon is None else gbdt_epsilon(noise_multiplier=z, releases=releases, delta=delta)
    return GbdtTraining(
        model=model, params=params, noise_multiplier=z, epsilon=spent, delta=delta, releases=releases
    )


def _edges(
    parties: list[GbdtNode], params: GbdtParams, *, sigma: float, d: int, rng: np.random.Generator
) -> BinEdges:
    if not params.private_bins:
        return uniform_edges(d, fine_bins=params.fine_bins, max_bins=params.max_bins)
    total = sum(p.counts_release(sigma=sigma, n_nodes=len(parties), rng=rng) for p in parties)
    return quantile_edges(np.asarray(total), max_bins=params.max_bins)


def _grow_tree(
    parties: list[GbdtNode], edges: BinEdges, params: GbdtParams, *, z: float, rng: np.random.Generator
) -> Tree:
    k = len(parties)
    pair = pair_sensitivity(params.grad_clip)
    for party in parties:
        party.start_tree(sample_rate=params.sample_rate, rng=rng)
    features, thresholds = [], []
    for level in range(params.depth):
        if params.split is SplitRule.GAIN:
            sigma = z * math.sqrt(edges.n_features) * pair
            total = sum(
                p.level_release(
                    n_nodes=2**level,
                    n_bins=edges.max_bins,
                    clip=params.grad_clip,
                    sigma=sigma,
                    n_parties=k,
                    rng=rng,
                )
                for p in parties
            )
            f, t = best_splits(
                np.asarray(total),
                edges,
                reg_lambda=params.reg_lambda,
                min_child_hessian=params.min_child_hessian,
            )
        else:
            f, t = _random_splits(2**level, edges, rng)
        for party in parties:
            party.apply_splits(f, t)
        features.append(f)
        thresholds.append(t)
    sums = sum(
        p.leaf_release(n_leaves=2**params.depth, clip=params.grad_clip, sigma=z * pair, n_parties=k, rng=rng)
        for p in parties
    )
    values = leaf_values(np.asarray(sums), reg_lambda=params.reg_lambda, bound=params.leaf_bound)
    tree = Tree(features=tuple(features), thresholds=tuple(thresholds), leaves=values)
    for party in parties:
        party.finish_tree(tree, params.learning_rate)
    return tree


def _random_splits(n_nodes: int, edges: BinEdges, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random feature with at least two bins per node, and a random threshold below its last bin."""
    splittable = np.array([f for f in range(edges.n_features) if edges.n_bins(f) > 1])
    if len(splittable) == 0:
        return np.zeros(n_nodes, np.int64), np.full(n_nodes, edges.max_bins - 1)
    features = rng.choice(splittable, size=n_nodes)
    thresholds = np.array([rng.integers(edges.n_bins(f) - 1) for f in features], dtype=np.int64)
    return features.astype(np.int64), thresholds
