"""Utility of federated DP training on Complete Journey, side by side (issue 3, item 8).

For each task and each ε: centralized non-private training (``models.train_centralized``, the same
function as ``bench/baselines.py``), centralized DP-SGD at the same ε, every FreshMart store group
alone with DP-SGD at the same ε, and federated DP-SGD with FedAvg and FedProx on Flower's simulation
engine (all federated jobs in one simulation). Every model is trained on consented members only
(each node's consent gate) and evaluated on the SAME held-out members: the consented members that
``models.heldout_mask`` holds out at the four store groups, scored here with the exact ROC-AUC; the
federated models' histogram-pooled AUC (what the coordinator sees) is reported too. Every model
trains on standardised features as the federated job does (``models.feature_standardisation``): the
federated jobs pool the nodes' moments, centralized training uses the pooled training members'
moments and a store group alone its own. A non-private learning curve (L-BFGS logistic regression on
random subsets of the pooled training members, same held-out members) shows how much a task gains
from more members at all: the ceiling on what federation can add over one store group. Every DP
figure is the median of ``--repeats`` runs with fresh noise (the federated jobs' single runs are
listed under ``auc_runs``), and ``targets`` checks issue 3's utility targets on those medians. Also:
wall and CPU time of one federated round, and of one DP versus one non-DP local epoch.

    python bench/fl_utility.py [--federation DIR] [--epsilons 1 3 8] [--tasks churn propensity]
                               [--rounds 8] [--repeats 3] [--out bench/results]

Prints JSON; writes ``fl_utility.json`` and ``fl_utility.png`` (AUC against ε) into ``--out``.
Timings are wall-clock on a shared machine: read them as upper bounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from coordinator.job_outcome import RoundReport
from loyalfed.datasets.complete_journey import build_complete_journey_federation
from loyalfed.federated_run import experiment_policies, run_federated_jobs, select_partners
from models import TaskDataset, make_model, train_centralized
from models.feature_standardisation import FeatureMoments
from models.metrics import roc_auc
from models.task import Task as TaskName
from participant_node.data import load_federation
from participant_node.training.dp_sgd import (
    DpSgdSettings,
    poisson_sample_rate,
    train_dp_sgd,
    train_non_private,
)
from participant_node.training.local_task_data import LocalTaskData, load_local_task_data
from participant_node.training.privacy_accountant import calibrate_noise_multiplier, effective_delta
from protocol import JobSpec, StrategyName


def _node_data(federation: Path, spec: JobSpec) -> dict[str, LocalTaskData]:
    now = datetime.now(UTC).replace(tzinfo=None)
    partners = select_partners(load_federation(federation), None)
    return {pid: load_local_task_data(path, spec, at=now) for pid, path, _ in partners}


def _score(model: torch.nn.Module, data: TaskDataset) -> float:
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(data.X))).numpy()
    return float(roc_auc(data.y, scores))


def _dp_model(train: TaskDataset, job: JobSpec, *, seed: int, noise_free: bool = False) -> torch.nn.Module:
    """DP-SGD on one dataset with the federated job's step count, its noise calibrated to (ε, δ)
    (``noise_free``: the same clipped, Poisson-sampled steps without noise, no privacy at all).

    Standardised with the dataset's own moments when the job standardises; the returned model has
    the standardisation folded in (it scores publicly scaled rows, like a published model).
    """
    standardisation = FeatureMoments.of(train.X).standardisation() if job.standardise else None
    if standardisation is not None:
        train = replace(train, X=standardisation.apply(train.X))
    torch.manual_seed(seed)
    model = make_model(job.model, train.X.shape[1])
    rate = poisson_sample_rate(len(train), job.batch_size)
    steps = job.rounds * job.local_steps
    sigma = (
        0.0
        if noise_free
        else calibrate_noise_multiplier(
            epsilon=job.epsilon, delta=effective_delta(job.delta, len(train)), sample_rate=rate, steps=steps
        )
    )
    settings = DpSgdSettings(
        noise_multiplier=sigma,
        max_grad_norm=job.max_grad_norm,
        learning_rate=job.learning_rate,
        batch_size=job.batch_size,
        steps=steps,
    )
    train_dp_sgd(model, train.X, train.y, settings)
    return model if standardisation is None else standardisation.fold_into(model)


def _median_of(repeats: int, run: Callable[[int], float]) -> float:
    return round(statistics.median(run(seed) for seed in range(repeats)), 4)


def _pooled_and_per_node(
    nodes: dict[str, LocalTaskData], job: JobSpec, repeats: int, *, noise_free: bool
) -> tuple[float, dict[str, float]]:
    """Held-out AUC of `_dp_model` trained on the pooled training members and on each store group."""
    pooled_train = TaskDataset.concatenate(d.train for d in nodes.values())
    heldout = TaskDataset.concatenate(d.heldout for d in nodes.values())

    def auc(train: TaskDataset) -> float:
        return _median_of(
            repeats, lambda s: _score(_dp_model(train, job, seed=s, noise_free=noise_free), heldout)
        )

    return auc(pooled_train), {pid: auc(d.train) for pid, d in nodes.items()}


def _local_results(nodes: dict[str, LocalTaskData], job: JobSpec, repeats: int) -> dict[str, Any]:
    centralized_dp, per_node = _pooled_and_per_node(nodes, job, repeats, noise_free=False)
    return {
        "centralized_dp": centralized_dp,
        "single_node_dp": per_node,
        "single_node_dp_median": round(statistics.median(per_node.values()), 4),
    }


def _recipe_without_noise(nodes: dict[str, LocalTaskData], job: JobSpec, repeats: int) -> dict[str, Any]:
    """The job's SGD recipe (steps, clipping, sampling) without noise: pooled and per store group.

    The pooled figure bounds what federated DP-SGD with this recipe can reach at any ε; its distance
    to a store group alone at ε = 1 bounds what federation can add there.
    """
    pooled, per_node = _pooled_and_per_node(nodes, job, repeats, noise_free=True)
    return {
        "pooled": pooled,
        "single_node": per_node,
        "single_node_median": round(statistics.median(per_node.values()), 4),
    }


def _centralized_non_private(nodes: dict[str, LocalTaskData], repeats: int) -> float:
    train = TaskDataset.concatenate(d.train for d in nodes.values())
    pooled = _standardised(TaskDataset.concatenate([train, *(d.heldout for d in nodes.values())]), train)
    # train_centralized holds out exactly the members of models.heldout_mask: the same held-out set.
    return _median_of(repeats, lambda s: train_centralized(pooled, kind="logreg", seed=s)[1]["auc"])


def _standardised(data: TaskDataset, train: TaskDataset) -> TaskDataset:
    """``data`` standardised with the moments of ``train`` (training members only)."""
    return replace(data, X=FeatureMoments.of(train.X).standardisation().apply(data.X))


def _learning_curve(
    nodes: dict[str, LocalTaskData], sizes: list[int], draws: int
) -> dict[str, dict[str, float]]:
    """Non-private L-BFGS AUC on the shared held-out members, trained on random subsets of size n."""
    train = TaskDataset.concatenate(d.train for d in nodes.values())
    heldout = TaskDataset.concatenate(d.heldout for d in nodes.values())
    rng = np.random.default_rng(0)
    curve: dict[str, dict[str, float]] = {}
    for n in sorted({min(size, len(train)) for size in sizes}):
        aucs = []
        for _ in range(draws if n < len(train) else 1):
            subset = train.subset(rng.choice(len(train), n, replace=False))
            if subset.y.min() == subset.y.max():
                continue  # a draw without both classes cannot be fitted
            pooled = _standardised(TaskDataset.concatenate([subset, heldout]), subset)
            aucs.append(train_centralized(pooled, kind="logreg")[1]["auc"])
        curve[str(n)] = {
            "auc_median": round(float(np.median(aucs)), 4),
            "auc_p10": round(float(np.percentile(aucs, 10)), 4),
            "auc_p90": round(float(np.percentile(aucs, 90)), 4),
            "draws": len(aucs),
        }
    return curve


def _federated(federation: Path, jobs: list[JobSpec], heldout: dict[str, TaskDataset]) -> dict[str, Any]:
    rounds: list[RoundReport] = []
    # Every job runs under a policy its partners' officers signed: here, drafted and approved in one
    # step by each partner's local officer (an experiment on bundled data).
    policies = experiment_policies(federation, jobs, registry=federation.parent / "registry.sqlite")
    runs = run_federated_jobs(federation, jobs, policies=policies, on_round=rounds.append)
    out: dict[str, Any] = {}
    for run in runs:
        job, outcome = run.outcome.job, run.outcome
        model = make_model(job.model, heldout[job.task.value].X.shape[1])
        assert outcome.arrays is not None and outcome.evaluation is not None
        model.load_state_dict(outcome.arrays.to_torch_state_dict())
        out[job.job_id] = {
            "auc": round(_score(model, heldout[job.task.value]), 4),
            "auc_from_histograms": round(outcome.evaluation.auc, 4),
            "max_node_epsilon": round(max(n.epsilon for n in outcome.nodes.values()), 4),
        }
    later = [r for r in rounds if r.server_round > 1]  # round 1 includes engine start-up and data loading
    out["round_wall_seconds_median"] = round(statistics.median(r.seconds for r in later), 3)
    out["round_node_cpu_seconds_median"] = round(statistics.median(r.node_cpu_seconds for r in later), 3)
    return out


_TIMED_EPOCHS = 10


def _epoch_timings(train: TaskDataset, job: JobSpec, repeats: int) -> dict[str, float]:
    """Wall and CPU seconds of one local epoch (n/B steps) with and without DP, median of repeats.

    Each timing runs ``_TIMED_EPOCHS`` epochs in one call and divides: an epoch of a store group is
    one to three steps, so a single-epoch timing would measure Opacus's per-call set-up (wrapping
    the model, building the Poisson loader), not the cost of training. The set-up is reported
    separately: it is paid once per round, whatever the number of local steps.
    """
    steps = max(1, round(1 / poisson_sample_rate(len(train), job.batch_size)))
    timings: dict[str, list[float]] = {
        name: [] for name in ("dp_wall", "dp_cpu", "plain_wall", "plain_cpu", "dp_setup_wall")
    }
    settings = DpSgdSettings(
        noise_multiplier=1.0,
        max_grad_norm=job.max_grad_norm,
        learning_rate=job.learning_rate,
        batch_size=job.batch_size,
        steps=steps * _TIMED_EPOCHS,
    )
    for _ in range(repeats + 1):  # the first repetition warms up torch and Opacus and is dropped
        wall, cpu = time.perf_counter(), time.process_time()
        train_dp_sgd(make_model(job.model, train.X.shape[1]), train.X, train.y, settings)
        timings["dp_wall"].append((time.perf_counter() - wall) / _TIMED_EPOCHS)
        timings["dp_cpu"].append((time.process_time() - cpu) / _TIMED_EPOCHS)
        wall = time.perf_counter()
        train_dp_sgd(make_model(job.model, train.X.shape[1]), train.X, train.y, replace(settings, steps=1))
        timings["dp_setup_wall"].append(time.perf_counter() - wall)
        wall, cpu = time.perf_counter(), time.process_time()
        train_non_private(
            make_model(job.model, train.X.shape[1]),
            train.X,
            train.y,
            learning_rate=job.learning_rate,
            batch_size=job.batch_size,
            epochs=_TIMED_EPOCHS,
        )
        timings["plain_wall"].append((time.perf_counter() - wall) / _TIMED_EPOCHS)
        timings["plain_cpu"].append((time.process_time() - cpu) / _TIMED_EPOCHS)
    medians = {f"{k}_seconds": round(statistics.median(v[1:]), 5) for k, v in timings.items()}
    medians["dp_over_plain_wall"] = round(medians["dp_wall_seconds"] / medians["plain_wall_seconds"], 2)
    medians["dp_over_plain_cpu"] = round(medians["dp_cpu_seconds"] / medians["plain_cpu_seconds"], 2)
    medians["steps_per_epoch"] = steps
    return medians


def run(
    federation: Path, tasks: list[str], epsilons: list[float], rounds: int, repeats: int
) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"tasks": {}}
    jobs: list[JobSpec] = []
    heldout: dict[str, TaskDataset] = {}
    token = uuid.uuid4().hex[:8]  # fresh job ids: every node refuses to re-run a job it already spent on
    for task in tasks:
        base = JobSpec(task=TaskName(task), rounds=rounds)
        nodes = _node_data(federation, base)
        heldout[task] = TaskDataset.concatenate(d.heldout for d in nodes.values())
        entry: dict[str, Any] = {
            "train_members": sum(len(d.train) for d in nodes.values()),
            "heldout_members": len(heldout[task]),
            "centralized_non_private": _centralized_non_private(nodes, repeats),
            "epsilons": {},
            "local_epoch_timing": _epoch_timings(nodes["freshmart-north"].train, base, repeats),
            "store_group_train_members": {pid: len(d.train) for pid, d in nodes.items()},
            "non_private_learning_curve": _learning_curve(nodes, _CURVE_SIZES, draws=_CURVE_DRAWS),
            "sgd_recipe_without_noise": _recipe_without_noise(nodes, base, repeats),
        }
        for eps in epsilons:
            job = base.model_copy(update={"epsilon": eps})
            entry["epsilons"][str(eps)] = _local_results(nodes, job, repeats)
            for strategy, mu in ((StrategyName.FEDAVG, 0.0), (StrategyName.FEDPROX, 0.01)):
                jobs.extend(
                    base.model_copy(
                        update={
                            "epsilon": eps,
                            "strategy": strategy,
                            "proximal_mu": mu,
                            "job_id": _job_id(task, strategy.value, eps, token, repeat),
                        }
                    )
                    for repeat in range(repeats)
                )
        result["tasks"][task] = entry
    federated = _federated(federation, jobs, heldout)
    _merge_federated(result, federated, tasks, epsilons, token, repeats)
    result["targets"] = _targets(result["tasks"])
    result.update(
        {
            "benchmark": "federated DP-SGD utility, Complete Journey, 4 FreshMart store groups",
            "rounds": rounds,
            "local_steps": jobs[0].local_steps,
            "delta": jobs[0].delta,
            "repeats": repeats,
            "round_wall_seconds_median": federated["round_wall_seconds_median"],
            "round_node_cpu_seconds_median": federated["round_node_cpu_seconds_median"],
            "wall_seconds": round(time.perf_counter() - started, 1),
            "note": "measured on a 2-core machine shared with other workloads; DP runs draw fresh noise",
        }
    )
    return result


_CURVE_SIZES = [25, 50, 100, 200, 400, 800, 1_000_000]
_CURVE_DRAWS = 20


def _job_id(task: str, strategy: str, eps: float, token: str, repeat: int) -> str:
    return f"bench-{task}-{strategy}-eps{eps:g}-{token}-r{repeat}"


def _merge_federated(
    result: dict[str, Any],
    federated: dict[str, Any],
    tasks: list[str],
    epsilons: list[float],
    token: str,
    repeats: int,
) -> None:
    for task in tasks:
        entry = result["tasks"][task]
        for eps in epsilons:
            cell = entry["epsilons"][str(eps)]
            for strategy in ("fedavg", "fedprox"):
                runs = [federated[_job_id(task, strategy, eps, token, r)] for r in range(repeats)]
                pooled = [r["auc_from_histograms"] for r in runs]
                cell[f"federated_{strategy}"] = {
                    "auc": round(statistics.median(r["auc"] for r in runs), 4),
                    "auc_runs": [r["auc"] for r in runs],
                    "auc_from_histograms": round(statistics.median(pooled), 4),
                    "max_node_epsilon": max(r["max_node_epsilon"] for r in runs),
                }
            cell["federated_minus_single_node_median"] = round(
                cell["federated_fedavg"]["auc"] - cell["single_node_dp_median"], 4
            )
            cell["federated_minus_centralized_non_private"] = round(
                cell["federated_fedavg"]["auc"] - entry["centralized_non_private"], 4
            )


def _targets(tasks: dict[str, Any]) -> dict[str, Any]:
    """Issue 3's utility targets, checked on the medians above (FedAvg, the default strategy)."""
    checks: dict[str, Any] = {}
    churn, propensity = tasks.get("churn"), tasks.get("propensity")

    def gap(entry: dict[str, Any], eps: str) -> float | None:
        cell = entry["epsilons"].get(eps)
        return None if cell is None else cell["federated_minus_centralized_non_private"]

    if churn is not None:
        aucs = [c["federated_fedavg"]["auc"] for c in churn["epsilons"].values()]
        checks["churn_within_0.01_at_eps3"] = _at_least(gap(churn, "3.0"), -0.01)
        checks["churn_within_0.015_at_eps1"] = _at_least(gap(churn, "1.0"), -0.015)
        checks["churn_never_below_0.75"] = min(aucs) >= 0.75
        runs = [a for c in churn["epsilons"].values() for a in c["federated_fedavg"]["auc_runs"]]
        checks["churn_never_below_0.75_in_any_single_run"] = min(runs) >= 0.75
    for name, entry in (("churn", churn), ("propensity", propensity)):
        if entry is None:
            continue
        eps1 = entry["epsilons"].get("1.0")
        lift = None if eps1 is None else eps1["federated_minus_single_node_median"]
        checks[f"{name}_beats_median_single_node_by_0.02_at_eps1"] = _at_least(lift, 0.02)
    if propensity is not None:
        checks["propensity_within_0.03_at_eps3"] = _at_least(gap(propensity, "3.0"), -0.03)
        eps3 = propensity["epsilons"].get("3.0")
        checks["propensity_at_least_0.78_at_eps3"] = (
            None if eps3 is None else eps3["federated_fedavg"]["auc"] >= 0.78
        )
    return checks


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound - 1e-9


def plot(result: dict[str, Any], path: Path) -> None:
    figure = Figure(figsize=(10, 8), layout="constrained")
    grid = figure.subplots(2, len(result["tasks"]), squeeze=False)
    for axis, curve_axis, (task, entry) in zip(grid[0], grid[1], result["tasks"].items(), strict=True):
        _plot_learning_curve(curve_axis, task, entry)
        eps = sorted(float(e) for e in entry["epsilons"])
        cells = [entry["epsilons"][str(e)] for e in eps]
        series = {
            "federated FedAvg": [c["federated_fedavg"]["auc"] for c in cells],
            "federated FedProx": [c["federated_fedprox"]["auc"] for c in cells],
            "centralized DP": [c["centralized_dp"] for c in cells],
            "single node DP (median)": [c["single_node_dp_median"] for c in cells],
        }
        for label, values in series.items():
            axis.plot(eps, values, marker="o", label=label)
        axis.axhline(
            entry["centralized_non_private"], color="black", linestyle="--", label="centralized non-private"
        )
        ceiling = entry["sgd_recipe_without_noise"]
        axis.axhline(ceiling["pooled"], color="grey", linestyle=":", label="same SGD, no noise: pooled")
        axis.axhline(
            ceiling["single_node_median"],
            color="grey",
            linestyle="-.",
            label="same SGD, no noise: one store group",
        )
        axis.set_xscale("log")
        axis.set_xticks(eps, [f"{e:g}" for e in eps])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("ε (δ = 1e-5)")
        axis.set_ylabel("held-out ROC-AUC")
        axis.set_title(task)
        axis.legend(fontsize=7)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def _plot_learning_curve(axis: Any, task: str, entry: dict[str, Any]) -> None:
    curve = entry["non_private_learning_curve"]
    sizes = [int(n) for n in curve]
    axis.plot(sizes, [curve[str(n)]["auc_median"] for n in sizes], marker="o", label="median of draws")
    axis.fill_between(
        sizes,
        [curve[str(n)]["auc_p10"] for n in sizes],
        [curve[str(n)]["auc_p90"] for n in sizes],
        alpha=0.2,
        label="10th-90th percentile",
    )
    for i, members in enumerate(entry["store_group_train_members"].values()):
        axis.axvline(members, color="grey", linestyle=":", label="one store group" if i == 0 else None)
    axis.set_xscale("log")
    axis.set_xlabel("training members (random subset of all store groups)")
    axis.set_ylabel("held-out ROC-AUC, non-private")
    axis.set_title(f"{task}: what more members buy without DP")
    axis.legend(fontsize=7)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--federation", type=Path)
    parser.add_argument("--tasks", nargs="+", default=["churn", "propensity"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        federation = args.federation
        if federation is None:
            federation = build_complete_journey_federation(Path(tmp) / "federation", seed=7)
        result = run(federation, args.tasks, args.epsilons, args.rounds, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fl_utility.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    plot(result, args.out / "fl_utility.png")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
