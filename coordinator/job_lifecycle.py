"""One job's life cycle on a Flower grid: describe, reserve, standardise, train, evaluate, settle.

The server asks every node to describe itself (partner id, data fingerprint) and reserves the job's
ε on each partner's yearly budget (``BudgetLedger.reserve`` refuses the whole job when one cap
would be exceeded). A standardising job pools the nodes' feature moments first
(``coordinator.pooled_standardisation``). Each round then trains through the job's composed
strategy (``coordinator.job_strategy``), checkpoints the global weights and reports progress;
evaluation rounds sum the nodes' score histograms (``coordinator.histogram_evaluation``; under
SecAgg+ ``coordinator.secure_server_app.SecureEvaluation``) and may stop the job early when the pooled
validation AUC stops improving. The published model is the mean of the last ``average_last``
global models, with the standardisation folded into its input layer. Whatever happens, the ledger
is finally settled from every node's own accountant (``coordinator.budget_settlement``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from flwr.app import ArrayRecord, Message, RecordDict
from flwr.serverapp import Grid

from coordinator.budget_ledger import BudgetLedger
from coordinator.budget_settlement import settle_from_nodes
from coordinator.federated_evaluation import EvaluationSummary
from coordinator.job_errors import JobFailedError, JobStoppedError
from coordinator.job_outcome import JobOutcome, RoundReport
from coordinator.job_progress import JobProgress, NoProgress
from coordinator.job_strategy import JobStrategy, compose_strategy, initial_arrays, published_arrays
from coordinator.node_deadline_grid import NodeDeadlineGrid
from coordinator.node_refusal import RefusalCallback, refuse_if_refused
from coordinator.pooled_standardisation import PooledMoments, pooled_standardisation
from coordinator.round_checkpoint import RoundCheckpoint, load_checkpoint, save_checkpoint
from models.dp_schedule import dp_sgd_schedule
from protocol import (
    JobSpec,
    MalformedReplyError,
    NodeRecord,
    QueryAction,
    RecordKey,
    Refusal,
    job_config_record,
    query_type,
)

__all__ = ["EvaluateRound", "TrainRound", "plain_evaluation", "plain_round", "run_job"]

_log = logging.getLogger(__name__)
_AUC_IMPROVEMENT = 1e-4  # a pooled validation AUC must beat the best by this much to count
# ... and, when the AUC comes from DP-noised counts, by this many of the noise's standard deviations
# of the AUC: a gain the release's noise alone could produce is not an improvement. The first
# evaluation is the baseline.
_AUC_NOISE_MARGIN = 3.0


class TrainRound(Protocol):
    """Runs one training round and returns the new global model (plain rounds or SecAgg+)."""

    def __call__(
        self, grid: Grid, strategy: JobStrategy, outcome: JobOutcome, server_round: int
    ) -> ArrayRecord: ...


class EvaluateRound(Protocol):
    """Evaluates ``arrays`` on every node's held-out members and returns the pooled summary."""

    def __call__(
        self, grid: Grid, strategy: JobStrategy, job: JobSpec, arrays: ArrayRecord, server_round: int
    ) -> EvaluationSummary: ...


def plain_round(grid: Grid, strategy: JobStrategy, outcome: JobOutcome, server_round: int) -> ArrayRecord:
    """A Message-API round: the composed strategy configures, the grid delivers, the strategy aggregates."""
    assert outcome.arrays is not None
    job = outcome.job
    messages = strategy.guard.configure_train(server_round, outcome.arrays, job_config_record(job), grid)
    replies = grid.send_and_receive(messages, timeout=job.round_timeout_s)
    arrays, _ = strategy.guard.aggregate_train(server_round, replies)
    assert arrays is not None  # the guard raises rather than return no model
    return arrays


def run_job(
    grid: Grid,
    job: JobSpec,
    *,
    expected_nodes: int,
    ledger: BudgetLedger | None = None,
    progress: JobProgress | None = None,
    checkpoint_dir: Path | None = None,
    train_round: TrainRound = plain_round,
    outcome: JobOutcome | None = None,
    evaluate_round: EvaluateRound | None = None,
) -> JobOutcome:
    """Run ``job`` over the nodes of ``grid``; raise typed errors (refused, failed, stopped).

    ``outcome`` may be given pre-made (a subclass the ``train_round`` fills in further). With a
    ``checkpoint_dir`` every finished round is checkpointed there, and a job that finds a checkpoint
    of its own there resumes after that round (its ε was reserved by the run that wrote it).
    """
    sink = progress or NoProgress()
    # Nodes may crash or lose their network at any time: no wait for them is without a deadline.
    grid = NodeDeadlineGrid(grid, minimum=max(job.min_nodes, 1), timeout_s=job.round_timeout_s)

    def refused(refusal: Refusal) -> None:
        sink.node_refused(job.job_id, refusal)

    node_ids = _wait_for_nodes(grid, expected_nodes, timeout=job.round_timeout_s)
    partners = _describe(grid, node_ids, job, refused)
    resumed = load_checkpoint(checkpoint_dir, job.job_id) if checkpoint_dir is not None else None
    if ledger is not None and resumed is None:
        ledger.reserve(
            sorted(partners.values()),
            job_id=job.job_id,
            purpose=job.purpose,
            epsilon=job.epsilon,
            delta=job.delta,
        )
    pooled: PooledMoments | None = None
    outcome = outcome or JobOutcome(job=job)
    outcome.job, outcome.arrays = job, initial_arrays(job)
    try:
        if resumed is not None:
            outcome.job = resumed.job
        elif job.standardise and job.standardisation is None:
            pooled = pooled_standardisation(grid, list(partners), job, on_refusal=refused)
            outcome.job = job.with_standardisation(pooled.standardisation)
            if job.schedule_by_rule:
                outcome.job = _scheduled(outcome.job, pooled.rounded_counts)
        strategy = compose_strategy(outcome.job, len(node_ids), on_refusal=refused)
        if pooled is not None and pooled.group_labels is not None:
            strategy.evaluation.know_group_labels(pooled.group_labels)
        outcome.nodes = strategy.guard.reports
        if resumed is not None:
            _restore(strategy, outcome, resumed)
        evaluate = evaluate_round or plain_evaluation
        _train(grid, strategy, outcome, sink, checkpoint_dir, train_round, evaluate, resumed)
        assert outcome.arrays is not None
        outcome.evaluation = evaluate(grid, strategy, outcome.job, outcome.arrays, 0)
        outcome.arrays = published_arrays(outcome.job, outcome.arrays)
    finally:
        _settle(grid, partners, outcome, ledger, sink)
    return outcome


def _scheduled(job: JobSpec, rounded_counts: tuple[int, ...]) -> JobSpec:
    """The job with the DP-SGD schedule of ``models.dp_schedule``'s rule for nodes of these sizes."""
    schedule = dp_sgd_schedule(
        rounded_counts,
        epsilon=job.epsilon,
        delta=job.delta,
        task=job.task,
        model=job.model,
        n_features=job.schema.n_features,
    )
    _log.info(
        "job %s: DP-SGD schedule by rule for nodes of ~%s members: %s", job.job_id, rounded_counts, schedule
    )
    return job.with_schedule(schedule.job_fields())


def _settle(
    grid: Grid, partners: dict[int, str], outcome: JobOutcome, ledger: BudgetLedger | None, sink: JobProgress
) -> None:
    job = outcome.job
    outcome.spent = settle_from_nodes(grid, partners, job, ledger)
    for partner, spent in outcome.spent.items():
        if partner in outcome.nodes:  # the card shows what the node's accountant says, not its last reply
            outcome.nodes[partner] = replace(
                outcome.nodes[partner], epsilon=spent.epsilon, delta=spent.delta, steps=spent.steps
            )
    sink.budget_settled(job.job_id, dict(outcome.spent))


def _wait_for_nodes(grid: Grid, expected: int, *, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise JobFailedError(f"only {len(node_ids)} of {expected} nodes connected within {timeout:.0f} s")
        time.sleep(0.2)
    return node_ids


def _describe(grid: Grid, node_ids: list[int], job: JobSpec, on_refusal: RefusalCallback) -> dict[int, str]:
    """node id -> partner id of every node that described itself; a refusal stops the job."""
    content = RecordDict({RecordKey.CONFIG: job_config_record(job)})
    kind = query_type(QueryAction.DESCRIBE)
    messages = [Message(content, dst_node_id=n, message_type=kind) for n in node_ids]
    partners: dict[int, str] = {}
    for reply in grid.send_and_receive(messages, timeout=job.round_timeout_s):
        if reply.has_error():
            _log.warning("describe: node %s failed: %s", reply.metadata.src_node_id, reply.error.reason)
            continue
        try:
            refuse_if_refused(reply, on_refusal)
            partners[reply.metadata.src_node_id] = NodeRecord.parse(reply.content).partner_id
        except MalformedReplyError as err:
            _log.warning("describe: node %s sent a malformed reply: %s", reply.metadata.src_node_id, err)
    if len(partners) < job.min_nodes:
        raise JobFailedError(
            f"only {len(partners)} nodes described themselves; the job needs {job.min_nodes}"
        )
    return partners


def _train(
    grid: Grid,
    strategy: JobStrategy,
    outcome: JobOutcome,
    sink: JobProgress,
    checkpoint_dir: Path | None,
    train_round: TrainRound,
    evaluate: EvaluateRound,
    resumed: RoundCheckpoint | None = None,
) -> None:
    job, best_auc, stale, first = outcome.job, -1.0, 0, 1
    if resumed is not None:
        best_auc, stale, first = resumed.best_auc, resumed.stale, resumed.server_round + 1
        _log.info("job %s resumes after round %s", job.job_id, resumed.server_round)
    for server_round in range(first, job.rounds + 1):
        if sink.stop_requested(job.job_id):
            raise JobStoppedError(f"job {job.job_id} stopped on request before round {server_round}")
        started = time.perf_counter()
        outcome.arrays = train_round(grid, strategy, outcome, server_round)
        auc = None
        if job.eval_every and server_round % job.eval_every == 0 and server_round < job.rounds:
            summary = evaluate(grid, strategy, job, outcome.arrays, server_round)
            auc = summary.auc
            needed = max(_AUC_IMPROVEMENT, _AUC_NOISE_MARGIN * summary.auc_noise_sd)
            improved = best_auc < 0 or auc > best_auc + needed
            best_auc, stale = (auc, 0) if improved else (best_auc, stale + 1)
        report = _round_report(strategy, job, server_round, time.perf_counter() - started, auc)
        outcome.rounds.append(report)
        if checkpoint_dir is not None:
            _checkpoint(checkpoint_dir, server_round, published_arrays(job, outcome.arrays))
            save_checkpoint(
                checkpoint_dir, _round_checkpoint(strategy, outcome, server_round, best_auc, stale)
            )
        sink.round_finished(report)
        if job.patience and stale >= job.patience:
            outcome.stopped_early = True
            _log.info("early stop after round %s: validation AUC has not improved", server_round)
            break
    outcome.arrays = strategy.averaging.published() or outcome.arrays


def _round_checkpoint(
    strategy: JobStrategy, outcome: JobOutcome, server_round: int, best_auc: float, stale: int
) -> RoundCheckpoint:
    assert outcome.arrays is not None
    return RoundCheckpoint(
        server_round=server_round,
        job=outcome.job,
        arrays=outcome.arrays,
        momentum=strategy.momentum.momentum_vector,
        recent=strategy.averaging.kept(),
        rounds=list(outcome.rounds),
        nodes=dict(strategy.guard.reports),
        best_auc=best_auc,
        stale=stale,
    )


def _restore(strategy: JobStrategy, outcome: JobOutcome, checkpoint: RoundCheckpoint) -> None:
    """The strategy and the outcome as they were after the checkpoint's round."""
    outcome.arrays = checkpoint.arrays
    outcome.rounds = list(checkpoint.rounds)
    strategy.guard.reports.update(checkpoint.nodes)
    strategy.momentum.current_arrays = checkpoint.arrays
    strategy.momentum.momentum_vector = checkpoint.momentum
    strategy.averaging.restore(checkpoint.recent)


def _round_report(
    strategy: JobStrategy, job: JobSpec, server_round: int, seconds: float, auc: float | None
) -> RoundReport:
    tally, reports = strategy.guard.tally, strategy.guard.reports
    assert tally is not None
    return RoundReport(
        job_id=job.job_id,
        server_round=server_round,
        nodes_ok=tally.accepted,
        nodes_failed=tally.sampled - tally.accepted,
        seconds=seconds,
        train_loss=tally.train_loss,
        max_epsilon=max((r.epsilon for r in reports.values()), default=0.0),
        node_cpu_seconds=tally.cpu_seconds,
        validation_auc=auc,
    )


def plain_evaluation(
    grid: Grid, strategy: JobStrategy, job: JobSpec, arrays: ArrayRecord, server_round: int
) -> EvaluationSummary:
    """Each node sends its DP-noised vector; the histogram evaluation sums them."""
    messages = strategy.guard.configure_evaluate(server_round, arrays, job_config_record(job), grid)
    strategy.guard.aggregate_evaluate(
        server_round, grid.send_and_receive(messages, timeout=job.round_timeout_s)
    )
    assert strategy.evaluation.last is not None
    return strategy.evaluation.last


def _checkpoint(directory: Path, server_round: int, arrays: ArrayRecord) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    named: dict[str, Any] = dict(zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True))
    np.savez(directory / "latest.npz", server_round=np.asarray(server_round), **named)
