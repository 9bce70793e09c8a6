"""Evaluation that leaves a node: binned score histograms over at least k members per bin.

Per-member scores never leave a node. The node scores its held-out members, counts positives and
negatives in fixed bins (shared by every node, so histograms pool), and merges adjacent bins until
each holds at least ``k`` members (k-anonymity-style aggregation, k = 20 by default as DESIGN.md
fixes). The coordinator then computes pooled and per-node ROC/AUC from the counts. Fixed edges are
uniform on the logit scale, so resolution is even where calibrated scores of rare events live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BASE_EDGES", "NodeHistogram", "binned_scores", "merge_small_bins"]

# 121 edges uniform in logit between -6 and 6, with 0 and 1 as the outer edges.
BASE_EDGES: np.ndarray = np.concatenate(([0.0], 1.0 / (1.0 + np.exp(-np.linspace(-6, 6, 119))), [1.0]))


@dataclass(frozen=True)
class NodeHistogram:
    """Counts of held-out positives and negatives per score bin; every bin holds ≥ k members."""

    edges: tuple[float, ...]
    positives: tuple[int, ...]
    negatives: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.edges) == len(self.positives) + 1 == len(self.negatives) + 1:
            raise ValueError("a histogram needs one more edge than counts")

    @property
    def n(self) -> int:
        return sum(self.positives) + sum(self.negatives)


def binned_scores(
    scores: np.ndarray, labels: np.ndarray, *, k: int, edges: np.ndarray = BASE_EDGES
) -> NodeHistogram:
    """Histogram of ``scores`` (in [0, 1]) by label, with bins merged until each holds ≥ ``k`` members.

    Raises ``ValueError`` when fewer than ``k`` members are given: nothing may be released then.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    if len(scores) < k:
        raise ValueError(f"only {len(scores)} members to evaluate; at least k={k} are needed")
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    positive = labels.astype(bool)
    pos = np.bincount(index[positive], minlength=len(edges) - 1)
    neg = np.bincount(index[~positive], minlength=len(edges) - 1)
    return merge_small_bins(edges, pos, neg, k=k)


def merge_small_bins(edges: np.ndarray, pos: np.ndarray, neg: np.ndarray, *, k: int) -> NodeHistogram:
    """Merge adjacent bins left to right until each holds ≥ k members; a short tail joins the last bin."""
    out_edges, out_pos, out_neg = [float(edges[0])], [], []
    acc_pos = acc_neg = 0
    for i in range(len(pos)):
        acc_pos += int(pos[i])
        acc_neg += int(neg[i])
        if acc_pos + acc_neg >= k:
            out_edges.append(float(edges[i + 1]))
            out_pos.append(acc_pos)
            out_neg.append(acc_neg)
            acc_pos = acc_neg = 0
    if acc_pos + acc_neg:
        out_pos[-1] += acc_pos
        out_neg[-1] += acc_neg
    out_edges[-1] = float(edges[-1])
    return NodeHistogram(tuple(out_edges), tuple(out_pos), tuple(out_neg))
