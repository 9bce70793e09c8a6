"""Federated DP gradient-boosted trees beside DP-SGD: what the trees cost in ε and what they gain.

For each ``<data>:<task>`` (Complete Journey or a synthetic federation shape of
`loyalfed.datasets.synthetic_shapes`; propensity by default), on the SAME consented training and
held-out members of every node (``participant_node.training.local_task_data``, the split of
``models.heldout_mask``), the exact held-out AUC of:

* ``plain_rfm_logreg``: the floor -- L-BFGS logistic regression on the four classic RFM columns,
  centralized, non-private (``bench/fl_generalisation.py``'s yardstick);
* ``centralized_logreg``: the same on the project's features;
* ``centralized_gbdt_sklearn``: scikit-learn's ``HistGradientBoostingClassifier`` with its defaults on
  the pooled training members, non-private -- what trees can reach on these features;
* ``federated_gbdt_noise_free``: ``models.dp_gbdt`` across the nodes without noise (ε infinite);
* ``dp_sgd_logreg``: the job's DP-SGD logistic regression at each ε, replayed by
  ``bench/dp_recipe_emulation.py`` (the job's schedule rule, node calibration, Poisson sampling,
  clipping, FedAvgM, iterate averaging; it reproduces the Flower job path within its run-to-run
  noise), median of ``--repeats`` noise draws;
* ``dp_gbdt``: ``models.dp_gbdt`` across the nodes at each ε, for both split rules (gain from noisy
  level histograms; random splits, only the leaves noisy), median of ``--repeats`` noise draws, with
  the ε the accountant says the whole training spent at δ = min(job δ, 1 / training members), the
  noise multiplier and the number of Gaussian releases.

The trees' hyperparameters are fixed in advance (``GBDT_PARAMS``), the same on every data set and
never chosen on held-out members. Every node trains on its own members only; what the coordinator
receives is the sum of the nodes' noisy releases (the total secure aggregation would give it).

    python bench/gbdt_propensity.py [--data complete-journey:propensity cj-like-1k:propensity ...]
                                    [--epsilons 1 3 8] [--repeats 5] [--out bench/results]

Prints one JSON line per data set as it finishes, then the whole result; writes
``gbdt_propensity.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Sibling scripts: bench/ is the script's own folder on sys.path.
from dp_recipe_emulation import check_data_arguments, emulate, federation_of, standardised_federation
from fl_generalisation import _centralized_logreg, _node_data, _pooled
from sklearn.ensemble import HistGradientBoostingClassifier

from models.dp_gbdt import GbdtParams, SplitRule, train_dp_gbdt
from models.feature_schema import plain_rfm_schema
from models.metrics import roc_auc
from models.task import Task
from participant_node.training.local_task_data import LocalTaskData
from protocol import JobSpec

DEFAULT_DATA = [
    "complete-journey:propensity",
    "cj-like-1k:propensity",
    "short-history-jpy-1k:propensity",
    "cj-like-10k:propensity",
    "cj-like-10k:churn",
    "one-off-10k:churn",
]
# Fixed in advance for every data set: 20 trees of depth 3 with shrinkage 0.3 (a common small
# boosting configuration), 16 quantile bins cut from a 64-cell public grid, gradients unclipped
# inside [-1, 1]. Fewer, shallower trees spend less per release; these were not tuned on any data.
GBDT_PARAMS = GbdtParams(trees=20, depth=3, learning_rate=0.3, max_bins=16, fine_bins=64)


@dataclass(frozen=True)
class Loaded:
    """One data set's node data (schema scale), the plain-RFM node data and the job it was built for."""

    name: str
    job: JobSpec
    nodes: dict[str, LocalTaskData]
    rfm_nodes: dict[str, LocalTaskData]


def load(data: str, root: Path, built: dict[str, Path]) -> Loaded:
    """``data`` is ``<shape or complete-journey>:<task>``; a federation is generated once per name."""
    federation, job = federation_of(data, root, default_task=Task.PROPENSITY, built=built)
    return Loaded(data, job, _node_data(federation, job), _node_data(federation, job, plain_rfm_schema()))


def _node_arrays(loaded: Loaded) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(d.train.X.astype(np.float64), d.train.y.astype(np.float64)) for d in loaded.nodes.values()]


def _dp_sgd(loaded: Loaded, epsilons: list[float], repeats: int) -> dict[str, Any]:
    federation = standardised_federation(loaded.nodes, loaded.job)
    out = {}
    for eps in epsilons:
        runs = [emulate(federation, epsilon=eps, rng=np.random.default_rng(1000 + r)) for r in range(repeats)]
        out[f"{eps:g}"] = {"auc": round(statistics.median(runs), 4), "auc_runs": [round(a, 4) for a in runs]}
    return out


def _dp_gbdt(loaded: Loaded, split: SplitRule, epsilons: list[float], repeats: int) -> dict[str, Any]:
    _, heldout = _pooled(loaded.nodes)
    nodes = _node_arrays(loaded)
    delta = min(loaded.job.delta, 1.0 / sum(len(y) for _, y in nodes))
    params = GBDT_PARAMS.model_copy(update={"split": split})
    out: dict[str, Any] = {}
    for eps in epsilons:
        runs, cpu = [], 0.0
        for repeat in range(repeats):
            started = time.process_time()
            trained = train_dp_gbdt(
                nodes, params, epsilon=eps, delta=delta, rng=np.random.default_rng(repeat)
            )
            cpu += time.process_time() - started
            runs.append(roc_auc(heldout.y, trained.model.predict_proba(heldout.X)))
        out[f"{eps:g}"] = {
            "auc": round(statistics.median(runs), 4),
            "auc_runs": [round(a, 4) for a in runs],
            "epsilon_spent": round(trained.epsilon, 4),
            "delta": delta,
            "noise_multiplier": round(trained.noise_multiplier, 3),
            "gaussian_releases": trained.releases.total,
            "cpu_seconds_per_training": round(cpu / repeats, 3),
        }
    return out


def run(loaded: Loaded, epsilons: list[float], repeats: int) -> dict[str, Any]:
    """Every figure of one data set."""
    started = time.perf_counter()
    train, heldout = _pooled(loaded.nodes)
    rfm_auc, *_ = _centralized_logreg(loaded.rfm_nodes)
    logreg_auc, *_ = _centralized_logreg(loaded.nodes)
    sklearn_gbdt = HistGradientBoostingClassifier(random_state=0).fit(train.X, train.y)
    noise_free = train_dp_gbdt(
        _node_arrays(loaded), GBDT_PARAMS, epsilon=None, delta=loaded.job.delta, rng=np.random.default_rng(0)
    )
    dp_sgd = _dp_sgd(loaded, epsilons, repeats)
    dp_gbdt = {split.value: _dp_gbdt(loaded, split, epsilons, repeats) for split in SplitRule}
    return {
        "data": loaded.name,
        "members_per_node": [d.members_used for d in loaded.nodes.values()],
        "train_members": len(train),
        "heldout_members": len(heldout),
        "heldout_base_rate": round(float(heldout.y.mean()), 4),
        "plain_rfm_logreg": rfm_auc,
        "centralized_logreg": logreg_auc,
        "centralized_gbdt_sklearn": round(roc_auc(heldout.y, sklearn_gbdt.predict_proba(heldout.X)[:, 1]), 4),
        "federated_gbdt_noise_free": round(roc_auc(heldout.y, noise_free.model.predict_proba(heldout.X)), 4),
        "dp_sgd_logreg": dp_sgd,
        "dp_gbdt": dp_gbdt,
        "dp_gbdt_minus_dp_sgd": {
            split: {eps: round(cell["auc"] - dp_sgd[eps]["auc"], 4) for eps, cell in cells.items()}
            for split, cells in dp_gbdt.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA, help="<shape or complete-journey>:<task>")
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0])
    parser.add_argument("--repeats", type=int, default=5, help="noise draws per ε (at least 3)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    check_data_arguments(parser, args.data)
    if args.repeats < 3 or any(eps <= 0 for eps in args.epsilons):
        parser.error("--repeats must be at least 3 and every ε positive")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    built: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            results[data] = run(load(data, Path(tmp), built), args.epsilons, args.repeats)
            print(json.dumps({data: results[data]}), flush=True)
    summary = {
        "benchmark": "federated DP GBDT vs DP-SGD logistic regression: held-out AUC and ε spent",
        "gbdt_params": GBDT_PARAMS.model_dump(mode="json"),
        "epsilons": args.epsilons,
        "repeats": args.repeats,
        "data": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "note": "2-core machine shared with other workloads; every DP run draws fresh noise",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gbdt_propensity.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
