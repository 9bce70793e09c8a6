"""Bins for histogram GBDT: a public grid on the schema's [0, 1] scale, merged into quantile bins.

Every column of a `models.feature_schema.FeatureSchema` is already clipped to PUBLIC bounds and
scaled onto [0, 1], so a uniform grid of ``fine_bins`` cells on [0, 1] needs no statistic of member
data and every node bins identically. The bounds are deliberately far outside any retailer's range
(money up to 10^12 in any currency), so most of a log column's members sit in a few dozen of the
cells: the coarse bins a tree splits on are therefore the quantiles of the pooled fine-cell counts.
Those counts are a statistic of member data; in a DP job they are released once, with Gaussian
noise and accounted (`models.gbdt_accounting`): a member adds 1 to one cell per feature, so the
L2 sensitivity of the whole count vector is sqrt(features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BinEdges", "fine_cells", "marginal_counts", "quantile_edges", "uniform_edges"]


def fine_cells(X: np.ndarray, fine_bins: int) -> np.ndarray:
    """The public grid cell (0 .. fine_bins - 1) of every value of ``X`` (n x d, on [0, 1])."""
    if fine_bins < 2:
        raise ValueError(f"fine_bins must be at least 2, got {fine_bins}")
    x = np.clip(np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0), 0.0, 1.0)
    return np.minimum((x * fine_bins).astype(np.int64), fine_bins - 1)


def marginal_counts(cells: np.ndarray, fine_bins: int) -> np.ndarray:
    """A node's count of members per (feature, fine cell): shape (d, fine_bins)."""
    d = cells.shape[1]
    flat = cells + np.arange(d, dtype=np.int64) * fine_bins
    return np.bincount(flat.ravel(), minlength=d * fine_bins).reshape(d, fine_bins).astype(np.float64)


@dataclass(frozen=True)
class BinEdges:
    """Coarse bins as runs of public fine cells, per feature.

    Attributes
    ----------
    fine_bins
        Cells of the public grid on [0, 1].
    starts
        Per feature, the sorted fine cells (> 0) where a coarse bin after the first one starts.
    """

    fine_bins: int
    starts: tuple[tuple[int, ...], ...]

    @property
    def n_features(self) -> int:
        return len(self.starts)

    @property
    def max_bins(self) -> int:
        """The most coarse bins of any feature (the width of a histogram)."""
        return 1 + max((len(s) for s in self.starts), default=0)

    def n_bins(self, feature: int) -> int:
        return 1 + len(self.starts[feature])

    def coarse(self, cells: np.ndarray) -> np.ndarray:
        """The coarse bin (0 .. n_bins(f) - 1) of every fine cell of ``cells`` (n x d)."""
        if cells.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} feature columns, got {cells.shape[1]}")
        out = np.empty_like(cells)
        for f, starts in enumerate(self.starts):
            out[:, f] = np.searchsorted(np.asarray(starts, dtype=np.int64), cells[:, f], side="right")
        return out

    def bin(self, X: np.ndarray) -> np.ndarray:
        """The coarse bins of features ``X`` (n x d, on the schema's [0, 1] scale)."""
        return self.coarse(fine_cells(X, self.fine_bins))


def uniform_edges(n_features: int, *, fine_bins: int, max_bins: int) -> BinEdges:
    """``max_bins`` equal runs of the public grid for every feature (no member data used)."""
    if not 2 <= max_bins <= fine_bins:
        raise ValueError(f"max_bins must be in [2, fine_bins={fine_bins}], got {max_bins}")
    starts = tuple(sorted({round(k * fine_bins / max_bins) for k in range(1, max_bins)}))
    return BinEdges(fine_bins=fine_bins, starts=(starts,) * n_features)


def quantile_edges(counts: np.ndarray, *, max_bins: int) -> BinEdges:
    """Coarse bins at the quantiles of (possibly noisy) fine-cell ``counts`` (d x fine_bins).

    Negative noisy counts count as zero. A bin starts at the first cell where the cumulative count
    passes k / max_bins of the feature's total (k = 1 .. max_bins - 1); cells that no quantile
    separates stay in one bin, so a feature whose members sit in three cells gets at most three bins.
    """
    if counts.ndim != 2:
        raise ValueError(f"counts must be features x fine cells, got shape {counts.shape}")
    fine_bins = counts.shape[1]
    if not 2 <= max_bins <= fine_bins:
        raise ValueError(f"max_bins must be in [2, fine_bins={fine_bins}], got {max_bins}")
    per_feature: list[tuple[int, ...]] = []
    for row in np.clip(counts, 0.0, None):
        total = row.sum()
        if total <= 0:
            per_feature.append(())
            continue
        # The cumulative count BEFORE each cell: a bin starts at cell c when that passes a quantile.
        before = np.concatenate([[0.0], np.cumsum(row)[:-1]])
        targets = total * np.arange(1, max_bins) / max_bins
        cuts = np.searchsorted(before, targets, side="left")
        per_feature.append(tuple(sorted({int(c) for c in cuts if 0 < c < fine_bins})))
    return BinEdges(fine_bins=fine_bins, starts=tuple(per_feature))
