"""ROC-curve and calibration PNGs (matplotlib, Agg backend: no display, safe in tests and servers)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # headless: the demo and CI have no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from models.metrics import CalibrationCurve, ScoreHistogram

_Corner = Literal["lower right", "upper left"]

__all__ = ["plot_calibration", "plot_roc_curves", "roc_points_from_histogram"]


def roc_points_from_histogram(histogram: ScoreHistogram) -> tuple[np.ndarray, np.ndarray]:
    """ROC points at every bin edge, from the highest bin down (federated evaluation has no raw scores)."""
    positives = histogram.positives[::-1].astype(np.float64)
    negatives = histogram.negatives[::-1].astype(np.float64)
    tpr = np.r_[0.0, np.cumsum(positives) / max(positives.sum(), 1.0)]
    fpr = np.r_[0.0, np.cumsum(negatives) / max(negatives.sum(), 1.0)]
    return fpr, tpr


def plot_roc_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    *,
    title: str,
    aucs: Mapping[str, float] | None = None,
) -> Path:
    """Draw one ROC curve per entry of ``curves`` (name -> (fpr, tpr)) and save a PNG at ``path``."""
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    try:
        for name, (fpr, tpr) in curves.items():
            label = f"{name} (AUC {aucs[name]:.3f})" if aucs and name in aucs else name
            ax.plot(fpr, tpr, linewidth=1.6, label=label)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
        _finish_unit_square(fig, ax, path, diagonal="chance", legend_loc="lower right")
    finally:
        plt.close(fig)
    return path


def plot_calibration(curves: Mapping[str, CalibrationCurve], path: Path, *, title: str) -> Path:
    """Reliability diagram: observed positive rate against mean predicted probability per bin."""
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    try:
        for name, curve in curves.items():
            seen = curve.counts > 0
            x, y = curve.mean_predicted[seen], curve.fraction_positive[seen]
            ax.plot(x, y, marker="o", markersize=3, label=name)
        ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title=title)
        _finish_unit_square(fig, ax, path, diagonal="perfectly calibrated", legend_loc="upper left")
    finally:
        plt.close(fig)
    return path


def _finish_unit_square(fig: Figure, ax: Axes, path: Path, *, diagonal: str, legend_loc: _Corner) -> None:
    """Draw the reference diagonal on [0, 1]², add legend and grid, and save the PNG at ``path``."""
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label=diagonal)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc=legend_loc, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
