"""The coordinator's Flower ServerApp: a federated DP training job, round by round.

Before any training the server asks every node to describe itself (partner id, data fingerprint) and
reserves the job's ε on each partner's yearly budget (``BudgetLedger.reserve``), which refuses the
whole job when one cap would be exceeded. A standardising job then asks every node for its training
members' feature moments (k-member aggregates) and pools them into the one standardisation all nodes
train with (``models.feature_standardisation``). Each round then samples the nodes through a Flower
strategy (FedAvg or FedProx, weighted by training-member counts; the aggregate then passes through
server momentum, ``coordinator.server_optimizer``), completes with the nodes that answer in time as
long as at least ``min_nodes`` do, refuses to continue if a node reports having spent more than the
job's ε, checkpoints the global weights, and optionally evaluates and stops early when the pooled
validation AUC stops improving. The published model is the mean of the last ``average_last`` global
models. The final evaluation pools the nodes' score histograms; the ledger is settled with what
every node reports it spent. The published model (and every checkpoint) has the standardisation
folded into its input layer, so it scores publicly scaled feature rows directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from coordinator.budget_ledger import BudgetLedger
from coordinator.federated_evaluation import EvaluationSummary, Histogram, fairness_gaps, summarise
from coordinator.job_config import JobConfig, StrategyName
from coordinator.job_errors import JobFailedError, JobRefusedError
from coordinator.server_optimizer import ServerOptimizer
from models.feature_standardisation import FeatureMoments, Standardisation
from models.networks import make_model

__all__ = [
    "JobOutcome",
    "NodeReport",
    "RoundReport",
    "feature_moments_of",
    "initial_arrays",
    "make_server_app",
    "published_arrays",
    "run_job",
]

_log = logging.getLogger(__name__)
_NODE = "node"
# The node's query action for feature moments and its reply record (participant_node.training's
# FEATURE_MOMENTS_ACTION and MOMENTS_RECORD; a test checks the two sides agree).
FEATURE_MOMENTS_ACTION = "feature_moments"
MOMENTS_RECORD = "moments"


@dataclass(frozen=True)
class NodeReport:
    """What one node reported about itself in its last training reply (counts and accounting only)."""

    partner_id: str
    data_fingerprint: str
    consent_snapshot_hash: str
    members_used: int
    members_excluded_by_consent: int
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int


@dataclass(frozen=True)
class RoundReport:
    job_id: str
    server_round: int
    nodes_ok: int
    nodes_failed: int
    seconds: float
    train_loss: float
    max_epsilon: float
    node_cpu_seconds: float = 0.0
    validation_auc: float | None = None


@dataclass
class JobOutcome:
    """Filled in by the ServerApp as the job runs; read by whoever launched it."""

    job: JobConfig
    arrays: ArrayRecord | None = None
    rounds: list[RoundReport] = field(default_factory=list)
    nodes: dict[str, NodeReport] = field(default_factory=dict)
    evaluation: EvaluationSummary | None = None
    stopped_early: bool = False


RoundCallback = Callable[[RoundReport], None]


def initial_arrays(job: JobConfig) -> ArrayRecord:
    """The starting global model, seeded by the job so every run of a job starts the same."""
    torch.manual_seed(job.seed)
    model = make_model(job.model, job.schema.n_features)
    return ArrayRecord(model.state_dict())


class JobRunner(Protocol):
    """Runs one job over a grid: ``run_job`` (plain rounds) or the SecAgg+ runner."""

    def __call__(
        self,
        grid: Grid,
        context: Context,
        job: JobConfig,
        *,
        expected_nodes: int,
        ledger: BudgetLedger | None,
        on_round: RoundCallback | None,
        checkpoint_dir: Path | None,
    ) -> JobOutcome: ...


def make_server_app(
    jobs: Sequence[JobConfig] | None,
    *,
    outcome_sink: Callable[[JobOutcome], None] | None = None,
    ledger: BudgetLedger | None = None,
    expected_nodes: int | None = None,
    on_round: RoundCallback | None = None,
    checkpoint_dir: Path | None = None,
    runner: JobRunner | None = None,
    grid_wrapper: Callable[[Grid], Grid] | None = None,
) -> ServerApp:
    """Build the ServerApp running ``jobs`` one after the other over the same nodes.

    ``jobs=None`` reads one job from Flower's ``run_config`` (deployment engine); several jobs in
    one run share the engine's start-up cost (the demo trains churn and propensity together).
    ``runner`` runs each job (default: plain Message-API rounds, ``run_job``); ``grid_wrapper``
    lets a caller observe what the server receives (tests check SecAgg+ vectors are masked).
    """
    app = ServerApp()
    run = runner or _run_plain_job

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        the_jobs = list(jobs) if jobs else [JobConfig.from_run_config(context.run_config)]
        nodes = expected_nodes or int(context.run_config.get("expected-nodes", the_jobs[0].min_nodes))
        seen = grid_wrapper(grid) if grid_wrapper is not None else grid
        for job in the_jobs:
            directory = checkpoint_dir / job.job_id if checkpoint_dir is not None else None
            outcome = run(
                seen, context, job, expected_nodes=nodes, ledger=ledger, on_round=on_round,
                checkpoint_dir=directory,
            )  # fmt: skip
            if outcome_sink is not None:
                outcome_sink(outcome)

    return app


def _run_plain_job(grid: Grid, context: Context, job: JobConfig, **options: Any) -> JobOutcome:
    return run_job(grid, job, **options)


RoundRunner = Callable[[Grid, JobConfig, "JobOutcome", int], "RoundReport"]


def run_job(
    grid: Grid,
    job: JobConfig,
    *,
    expected_nodes: int,
    ledger: BudgetLedger | None = None,
    on_round: RoundCallback | None = None,
    checkpoint_dir: Path | None = None,
    train_round: RoundRunner | None = None,
    outcome_type: type[JobOutcome] | None = None,
) -> JobOutcome:
    """Run ``job`` over the nodes of ``grid``: describe, reserve budgets, train, evaluate, settle.

    ``train_round`` runs one training round (default: the plain Message-API round); secure
    aggregation composes its own round into this same life cycle.
    """
    node_ids = _wait_for_nodes(grid, expected_nodes, timeout=job.round_timeout_s)
    partners = _describe(grid, node_ids, job)
    if ledger is not None:
        ledger.reserve(
            sorted(partners.values()),
            job_id=job.job_id,
            purpose=job.purpose,
            epsilon=job.epsilon,
            delta=job.delta,
        )
    if job.standardise and job.standardisation is None:
        job = job.with_standardisation(_pooled_standardisation(grid, list(partners), job))
    outcome = (outcome_type or JobOutcome)(job=job, arrays=initial_arrays(job))
    try:
        _train_rounds(grid, job, outcome, on_round, checkpoint_dir, train_round or _train_one_round)
        outcome.evaluation = _evaluate(grid, job, outcome.arrays)
        outcome.arrays = published_arrays(job, outcome.arrays)
    finally:
        if ledger is not None:
            for report in outcome.nodes.values():
                ledger.settle(report.partner_id, job_id=job.job_id, epsilon_spent=report.epsilon)
    return outcome


def _wait_for_nodes(grid: Grid, expected: int, *, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise JobFailedError(f"only {len(node_ids)} of {expected} nodes connected within {timeout:.0f} s")
        time.sleep(0.2)
    return node_ids


def _describe(grid: Grid, node_ids: list[int], job: JobConfig) -> dict[int, str]:
    messages = [
        Message(
            RecordDict({"config": ConfigRecord({"job-id": job.job_id})}),
            dst_node_id=n,
            message_type=MessageType.QUERY,
        )
        for n in node_ids
    ]
    replies = [m for m in grid.send_and_receive(messages, timeout=job.round_timeout_s) if not m.has_error()]
    partners = {m.metadata.src_node_id: str(m.content[_NODE]["partner-id"]) for m in replies}
    if len(partners) < job.min_nodes:
        raise JobFailedError(
            f"only {len(partners)} nodes described themselves; the job needs {job.min_nodes}"
        )
    return partners


def _pooled_standardisation(grid: Grid, node_ids: list[int], job: JobConfig) -> Standardisation:
    """Ask the described nodes for their feature moments and pool them (k-member aggregates)."""
    messages = [
        Message(
            RecordDict({"config": ConfigRecord(job.node_config())}),
            dst_node_id=n,
            message_type=f"{MessageType.QUERY}.{FEATURE_MOMENTS_ACTION}",
        )
        for n in node_ids
    ]
    parts = []
    for reply in grid.send_and_receive(messages, timeout=job.round_timeout_s):
        if reply.has_error():
            _log.warning(
                "feature moments: node %s failed: %s", reply.metadata.src_node_id, reply.error.reason
            )
            continue
        try:
            parts.append(feature_moments_of(reply.content[MOMENTS_RECORD]))
        except (KeyError, TypeError, ValueError, JobFailedError) as err:
            _log.warning(
                "feature moments: node %s sent a malformed reply: %s", reply.metadata.src_node_id, err
            )
    if len(parts) < job.min_nodes:
        raise JobFailedError(f"only {len(parts)} nodes sent feature moments; the job needs {job.min_nodes}")
    try:
        standardisation = FeatureMoments.pooled(parts).standardisation()
    except ValueError as err:
        raise JobFailedError(f"feature moments could not be pooled: {err}") from err
    if standardisation.n_features != job.schema.n_features:
        raise JobFailedError(
            f"nodes sent moments of {standardisation.n_features} features; "
            f"the schema has {job.schema.n_features}"
        )
    return standardisation


def feature_moments_of(record: Any) -> FeatureMoments:
    """A node's feature-moments record as moments; raise KeyError/TypeError/ValueError if malformed."""
    moments = FeatureMoments(
        count=int(record["count"]),
        sums=tuple(float(v) for v in _as_list(record["sums"])),
        sums_of_squares=tuple(float(v) for v in _as_list(record["sums-of-squares"])),
    )
    if not np.all(np.isfinite(moments.sums + moments.sums_of_squares)):
        raise ValueError("non-finite sums")
    return moments


def published_arrays(job: JobConfig, arrays: ArrayRecord | None) -> ArrayRecord:
    """``arrays`` with the job's standardisation folded into the input layer (unchanged without one)."""
    assert arrays is not None
    standardisation = job.standardisation
    if standardisation is None:
        return arrays
    model = make_model(job.model, job.schema.n_features)
    model.load_state_dict(arrays.to_torch_state_dict())
    return ArrayRecord(standardisation.fold_into(model).state_dict())


def _strategy(job: JobConfig, nodes: int) -> FedAvg:
    common = {"min_train_nodes": nodes, "min_available_nodes": nodes, "min_evaluate_nodes": nodes}
    if job.strategy is StrategyName.FEDPROX:
        return FedProx(proximal_mu=job.proximal_mu, **common)
    return FedAvg(**common)


def _train_rounds(
    grid: Grid,
    job: JobConfig,
    outcome: JobOutcome,
    on_round: RoundCallback | None,
    checkpoint_dir: Path | None,
    train_round: RoundRunner,
) -> None:
    best_auc, stale = -1.0, 0
    optimizer = ServerOptimizer(momentum=job.server_momentum, average_last=job.average_last)
    for server_round in range(1, job.rounds + 1):
        current = outcome.arrays
        assert current is not None
        report = train_round(grid, job, outcome, server_round)
        assert outcome.arrays is not None
        outcome.arrays = optimizer.step(current, outcome.arrays)
        if job.eval_every and server_round % job.eval_every == 0 and server_round < job.rounds:
            auc = _evaluate(grid, job, outcome.arrays).auc
            report = RoundReport(**{**report.__dict__, "validation_auc": auc})
            best_auc, stale = (auc, 0) if auc > best_auc + 1e-4 else (best_auc, stale + 1)
        outcome.rounds.append(report)
        if checkpoint_dir is not None and outcome.arrays is not None:
            _checkpoint(checkpoint_dir, server_round, published_arrays(job, outcome.arrays))
        if on_round is not None:
            on_round(report)
        if job.patience and stale >= job.patience:
            outcome.stopped_early = True
            _log.info("early stop after round %s: validation AUC has not improved", server_round)
            break
    published = optimizer.published()
    if published is not None:
        outcome.arrays = published


def record_node_reports(
    job: JobConfig, outcome: JobOutcome, reports: Sequence[NodeReport], server_round: int
) -> None:
    """Keep each node's latest report; stop the job if any node spent more ε than the job allows."""
    for report in reports:
        if report.epsilon > job.epsilon * 1.01:
            raise JobRefusedError(
                f"round {server_round}: {report.partner_id} reports ε={report.epsilon:.3f} above the job's "
                f"ε={job.epsilon}; the job is stopped"
            )
        outcome.nodes[report.partner_id] = report


def _train_one_round(grid: Grid, job: JobConfig, outcome: JobOutcome, server_round: int) -> RoundReport:
    started = time.perf_counter()
    nodes = len(list(grid.get_node_ids()))
    strategy = _strategy(job, min(nodes, max(job.min_nodes, 1)))
    config = ConfigRecord(job.node_config())
    assert outcome.arrays is not None
    messages = list(strategy.configure_train(server_round, outcome.arrays, config, grid))
    replies = list(grid.send_and_receive(messages, timeout=job.round_timeout_s))
    ok = [m for m in replies if not m.has_error()]
    failed = len(messages) - len(ok)
    for message in replies:
        if message.has_error():
            _log.warning(
                "round %s: node %s failed: %s",
                server_round,
                message.metadata.src_node_id,
                message.error.reason,
            )
    if len(ok) < job.min_nodes:
        raise JobFailedError(
            f"round {server_round}: only {len(ok)} of {len(messages)} nodes answered; "
            f"the job needs {job.min_nodes}"
        )
    reports = [_node_report(m) for m in ok]
    record_node_reports(job, outcome, reports, server_round)
    arrays, metrics = strategy.aggregate_train(server_round, ok)
    if arrays is None:
        raise JobFailedError(f"round {server_round}: aggregation produced no model")
    outcome.arrays = arrays
    loss = float(metrics["train-loss"]) if metrics is not None and "train-loss" in metrics else float("nan")
    return RoundReport(
        job_id=job.job_id,
        server_round=server_round,
        nodes_ok=len(ok),
        nodes_failed=failed,
        seconds=time.perf_counter() - started,
        train_loss=loss,
        max_epsilon=max(r.epsilon for r in reports),
        node_cpu_seconds=sum(float(m.content["metrics"].get("cpu-seconds", 0.0)) for m in ok),
    )


def _node_report(message: Message) -> NodeReport:
    node, metrics = message.content[_NODE], message.content["metrics"]
    return NodeReport(
        partner_id=str(node["partner-id"]),
        data_fingerprint=str(node["data-fingerprint"]),
        consent_snapshot_hash=str(node["consent-snapshot-hash"]),
        members_used=int(node["members-used"]),
        members_excluded_by_consent=int(node["members-excluded-by-consent"]),
        epsilon=float(metrics["epsilon"]),
        delta=float(metrics["delta"]),
        noise_multiplier=float(metrics["noise-multiplier"]),
        sample_rate=float(metrics["sample-rate"]),
        steps=int(metrics["steps"]),
    )


def _evaluate(grid: Grid, job: JobConfig, arrays: ArrayRecord | None) -> EvaluationSummary:
    assert arrays is not None
    config = ConfigRecord(job.node_config())
    messages = [
        Message(
            RecordDict({"arrays": arrays, "config": config}), dst_node_id=n, message_type=MessageType.EVALUATE
        )
        for n in grid.get_node_ids()
    ]
    replies = [m for m in grid.send_and_receive(messages, timeout=job.round_timeout_s) if not m.has_error()]
    if len(replies) < job.min_nodes:
        raise JobFailedError(f"evaluation: only {len(replies)} nodes answered; the job needs {job.min_nodes}")
    overall = [_histogram(m) for m in replies]
    groups: dict[str, dict[str, list[Histogram]]] = {}
    for message in replies:
        for (attribute, group), hist in _group_histograms(message).items():
            groups.setdefault(attribute, {}).setdefault(group, []).append(hist)
    return replace(summarise(overall), fairness=fairness_gaps(overall, groups) if groups else {})


def _histogram(message: Message) -> Histogram:
    metrics = message.content["metrics"]
    return Histogram(
        partner_id=str(message.content[_NODE]["partner-id"]),
        edges=tuple(float(x) for x in _as_list(metrics["hist-edges"])),
        positives=tuple(int(x) for x in _as_list(metrics["hist-pos"])),
        negatives=tuple(int(x) for x in _as_list(metrics["hist-neg"])),
        brier=float(metrics["brier"]),
        auc=_exact_node_auc(metrics.get("auc")),
    )


def _exact_node_auc(value: object) -> float | None:
    """A node's reported exact AUC, or None when it sent none or nothing sensible."""
    if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        return None
    return float(value)


def _group_histograms(message: Message) -> dict[tuple[str, str], Histogram]:
    metrics, partner = message.content["metrics"], str(message.content[_NODE]["partner-id"])
    out: dict[tuple[str, str], Histogram] = {}
    for key in metrics:
        if key.startswith("group:") and key.endswith(":edges"):
            attribute, group = key[len("group:") : -len(":edges")].split("=", 1)
            stem = key[: -len("edges")]
            out[(attribute, group)] = Histogram(
                partner_id=partner,
                edges=tuple(float(x) for x in _as_list(metrics[key])),
                positives=tuple(int(x) for x in _as_list(metrics[stem + "pos"])),
                negatives=tuple(int(x) for x in _as_list(metrics[stem + "neg"])),
                brier=float("nan"),
            )
    return out


def _as_list(value: object) -> Iterable[float]:
    if not isinstance(value, list):
        raise JobFailedError("a node sent a malformed evaluation histogram")
    return value


def _checkpoint(directory: Path, server_round: int, arrays: ArrayRecord) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(
        directory / "latest.npz",
        server_round=server_round,
        **dict(zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True)),
    )
