"""The federated DP-SGD recipe emulated in numpy: many noise draws in seconds, for what-if questions.

A job-path run (``bench/fl_generalisation.py``) takes minutes and one run's held-out AUC moves with
its noise draw (on Complete Journey propensity at ε = 3 the runs spread with a standard deviation of
about 0.008), so a median of 3 runs cannot tell recipes 0.005 apart. This emulation replays the
job's arithmetic on the same members and held-out split, with fresh noise per seed:

* each node's training members, standardised with the pooled training moments (the job pools k-member
  moments, ``models.feature_standardisation``);
* the schedule of ``models.dp_schedule`` from the rounded member counts, and each node's σ from the
  node's own calibration (``participant_node.training.privacy_accountant``, RDP, δ = min(1e-5, 1/n));
* per node and step: Poisson sampling at Opacus's rate 1 / ceil(n / B), the intercept's input at
  the node's value (``models.dp_schedule.intercept_input``), per-example clipping at C,
  Gaussian noise σC on the sum, division by the expected batch int(n q) (as Opacus);
* FedAvgM over the nodes (weighted by training members, server momentum 0.5, Flower's update rule)
  from the job's initial model (``coordinator.job_strategy.initial_arrays``), and the mean of the
  last 4 global models published;
* the exact AUC of the published model on the pooled held-out members.

No consent gate, SecAgg+ or card: this is the optimisation and its noise only. It reproduces the job
path within its run-to-run noise (Complete Journey propensity at ε = 3: 0.802 mean of 24 seeds here,
0.801 median of 3 job runs; churn 0.770 against 0.771). ``--lr-mult`` and ``--noise-scale`` scale
the schedule's step and the noise (0: the same walk without noise).

    python bench/dp_recipe_emulation.py --data complete-journey:propensity cj-like-1k:propensity
                                        [--epsilon 3] [--seeds 24] [--lr-mult 1] [--noise-scale 1]
                                        [--job-seed 7] [--intercept-input 0.5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

# A sibling script: bench/ is the script's own folder on sys.path.
from fl_generalisation import _node_data, _pooled

from coordinator.job_strategy import initial_arrays
from loyalfed.datasets.complete_journey import build_complete_journey_federation
from loyalfed.datasets.synthetic import generate_synthetic_federation
from loyalfed.datasets.synthetic_shapes import SHAPES
from models.dp_schedule import DpSgdSchedule, dp_sgd_schedule, intercept_input, rounded_member_count
from models.feature_standardisation import FeatureMoments
from models.metrics import roc_auc
from models.task import Task
from participant_node.training.dp_sgd import poisson_sample_rate
from participant_node.training.local_task_data import LocalTaskData
from participant_node.training.privacy_accountant import calibrate_noise_multiplier, effective_delta
from protocol import JobSpec

_COMPLETE_JOURNEY = "complete-journey"


@dataclass(frozen=True)
class Federation:
    """Standardised training members per node and the pooled held-out members."""

    job: JobSpec
    nodes: list[tuple[np.ndarray, np.ndarray]]
    heldout_X: np.ndarray
    heldout_y: np.ndarray


def federation_of(
    data: str, root: Path, *, default_task: Task = Task.CHURN, built: dict[str, Path] | None = None
) -> tuple[Path, JobSpec]:
    """The federation folder and job of ``data`` (``<shape or complete-journey>:<task>``, e.g.
    ``cj-like-1k:propensity``), built under ``root`` once per name when ``built`` keeps them."""
    name, _, task = data.partition(":")
    task_kind = Task(task or default_task.value)
    built = {} if built is None else built
    if name == _COMPLETE_JOURNEY:
        if name not in built:
            built[name] = build_complete_journey_federation(root / name, seed=7)
        return built[name], JobSpec(task=task_kind)
    shape = SHAPES[name]
    if name not in built:
        built[name] = root / name
        config, calibration = shape.synth_config(seed=7), shape.calibration()
        generate_synthetic_federation(built[name], config, calibration=calibration)
    horizon = shape.horizon_days if task_kind is Task.CHURN else 0  # 0: the task's default
    return built[name], JobSpec(task=task_kind, as_of=shape.as_of, horizon_days=horizon)


def check_data_arguments(parser: argparse.ArgumentParser, data: list[str]) -> None:
    """Refuse (``parser.error``) a ``--data`` entry naming no shape, data set or task."""
    for entry in data:
        name, _, task = entry.partition(":")
        if name != _COMPLETE_JOURNEY and name not in SHAPES:
            parser.error(f"unknown data {entry!r}: a shape of {sorted(SHAPES)} or {_COMPLETE_JOURNEY}")
        if task and task not in {t.value for t in Task}:
            parser.error(f"unknown task in {entry!r}: one of {[t.value for t in Task]}")


def standardised_federation(node_data: dict[str, LocalTaskData], job: JobSpec) -> Federation:
    """Every node's training members and the pooled held-out ones, standardised as the job does."""
    train, heldout = _pooled(node_data)
    standardisation = FeatureMoments.of(train.X).standardisation()
    nodes = [
        (standardisation.apply(d.train.X).astype(np.float64), d.train.y.astype(np.float64))
        for d in node_data.values()
    ]
    return Federation(job, nodes, standardisation.apply(heldout.X).astype(np.float64), heldout.y)


def load(data: str, root: Path) -> Federation:
    """``data`` is ``<shape or complete-journey>:<task>``, e.g. ``cj-like-1k:propensity``."""
    federation, job = federation_of(data, root)
    return standardised_federation(_node_data(federation, job), job)


def emulate(
    federation: Federation,
    *,
    epsilon: float,
    rng: np.random.Generator,
    lr_mult: float = 1.0,
    noise_scale: float = 1.0,
    intercept: float | None = None,
) -> float:
    """Held-out AUC of one emulated job with fresh noise from ``rng`` (``intercept``: the intercept's
    input, by default the node's rule)."""
    d = federation.heldout_X.shape[1]
    counts = [rounded_member_count(len(y)) for _, y in federation.nodes]
    schedule = dp_sgd_schedule(
        counts, epsilon=epsilon, delta=federation.job.delta, task=federation.job.task, n_features=d
    )
    scale = intercept_input(federation.job.model, standardised=True) if intercept is None else intercept
    start = initial_arrays(federation.job).to_numpy_ndarrays()  # the job's own initial model
    # Trained as the node does: the intercept's input is ``scale``, its weight b / scale.
    weights = np.concatenate([np.ravel(start[0]), np.ravel(start[1]) / scale]).astype(np.float64)
    steps = schedule.rounds * schedule.local_steps
    sizes = np.array([len(y) for _, y in federation.nodes], dtype=float)
    momentum: np.ndarray | None = None
    history = []
    for _ in range(schedule.rounds):
        updates = [
            _local_steps(
                weights,
                X,
                y,
                schedule,
                epsilon,
                federation.job.delta,
                steps,
                rng,
                lr_mult,
                noise_scale,
                scale,
            )
            for X, y in federation.nodes
        ]
        pseudo_gradient = weights - np.average(updates, axis=0, weights=sizes)
        momentum = (
            pseudo_gradient
            if momentum is None
            else federation.job.server_momentum * momentum + pseudo_gradient
        )
        weights = weights - momentum
        history.append(weights)
    published = np.mean(history[-federation.job.average_last :], axis=0)
    return roc_auc(federation.heldout_y, federation.heldout_X @ published[:-1] + scale * published[-1])


def _local_steps(
    weights: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    schedule: DpSgdSchedule,
    epsilon: float,
    delta: float,
    steps: int,
    rng: np.random.Generator,
    lr_mult: float,
    noise_scale: float,
    intercept: float,
) -> np.ndarray:
    batch, clip, lr = schedule.batch_size, schedule.max_grad_norm, schedule.learning_rate * lr_mult
    n = len(y)
    rate = poisson_sample_rate(n, batch)
    sigma = calibrate_noise_multiplier(
        epsilon=epsilon, delta=effective_delta(delta, n), sample_rate=rate, steps=steps
    )
    with_bias = np.hstack([X, np.full((n, 1), intercept)])
    w = weights.copy()
    for _ in range(schedule.local_steps):
        sampled = rng.random(n) < rate
        xb, yb = with_bias[sampled], y[sampled]
        gradients = (1 / (1 + np.exp(-(xb @ w))) - yb)[:, None] * xb
        norms = np.maximum(np.linalg.norm(gradients, axis=1), 1e-12)
        clipped = gradients * np.minimum(1.0, clip / norms)[:, None]
        noisy = clipped.sum(axis=0) + rng.normal(0.0, sigma * clip * noise_scale, w.shape)
        w = w - lr * noisy / int(n * rate)
    return w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="<shape or complete-journey>:<task>")
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--lr-mult", type=float, default=1.0)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    parser.add_argument("--job-seed", type=int, default=None, help="JobSpec.seed (the initial model's)")
    parser.add_argument(
        "--intercept-input", type=float, default=None, help="the intercept's input (default: the node's rule)"
    )
    args = parser.parse_args(argv)
    if args.intercept_input is not None and not 0 < args.intercept_input <= 1:
        parser.error(f"--intercept-input must be in (0, 1], got {args.intercept_input}")
    check_data_arguments(parser, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            federation = load(data, Path(tmp))
            if args.job_seed is not None:
                seeded = federation.job.model_copy(update={"seed": args.job_seed})
                federation = replace(federation, job=seeded)
            aucs = [
                emulate(
                    federation,
                    epsilon=args.epsilon,
                    rng=np.random.default_rng(1000 + seed),
                    lr_mult=args.lr_mult,
                    noise_scale=args.noise_scale,
                    intercept=args.intercept_input,
                )
                for seed in range(args.seeds)
            ]
            result = {
                "data": data,
                "epsilon": args.epsilon,
                "lr_mult": args.lr_mult,
                "noise_scale": args.noise_scale,
                "intercept_input": args.intercept_input
                or intercept_input(federation.job.model, standardised=True),
                "job_seed": federation.job.seed,
                "seeds": args.seeds,
                "auc_median": round(statistics.median(aucs), 4),
                "auc_mean": round(statistics.fmean(aucs), 4),
                "auc_sd": round(statistics.pstdev(aucs), 4),
            }
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
