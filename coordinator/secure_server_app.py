"""The coordinator's ServerApp for jobs with secure aggregation (Flower SecAgg+).

Same job life cycle as every job (``coordinator.job_lifecycle``: describe the nodes, reserve every
partner's ε on the ledger, train round by round, evaluate from k-member score histograms, settle the
ledger from every node's accountant); only the training round differs. Each round runs Flower 1.41's
``SecAggPlusWorkflow`` (which drives the legacy FitIns/FitRes strategy API) over the nodes, so the
server receives one *masked* vector per node and learns only their weighted sum, which it adds to the
global weights: nodes send updates (see ``participant_node.training.secure_client_app``). The
unmasked model then passes through the job's strategy stack like a plain round's aggregate (server
momentum, iterate averaging), and the budget guard checks the nodes' clear accounting figures.

SecAgg+ (Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020)
parameters, sized to the nodes of a round:

* ``num_shares`` = every sampled node (a complete neighbour graph, i.e. SecAgg, Bonawitz et al. 2017:
  with a handful of partners the logarithmic graph buys nothing);
* ``reconstruction_threshold`` = ⌊n/2⌋ + 1 shares: a strict majority is needed to rebuild a node's
  mask seed, so the server alone never can, and up to ⌈n/2⌉ - 1 nodes may drop out mid-round;
* ``clipping_range`` R = 2 · learning rate · local steps · C: a DP-SGD step moves each weight by at
  most lr · C · |batch|/B plus the Gaussian noise lr · σC/B, so over one round's local steps an update
  coordinate stays well inside ±R (the factor 2 covers Poisson batches above B and the noise);
  anything beyond is clipped by the quantiser;
* quantisation: each node scales its update by w = n_i / max_weight, maps [-R, R] onto the integers
  [0, 2^22) and masks modulo 2^32 (Flower's defaults), so a sum of up to 2^10 nodes cannot wrap. The
  rounding step 2R / 2^22 / w (≈ 1e-3 for R = 100 and 420 members) is far below the DP noise a round
  adds to each coordinate (≈ lr · σ C / B · √steps ≈ 0.1), so masking costs no utility.

Evaluation runs under SecAgg+ too (``SecureEvaluation``): each node's held-out score-histogram
vector (``protocol.evaluation_sum``) is the masked "update" of a train message carrying
``ConfigKey.SECURE_SUM``, with weight 1, so the server learns only the mean over the K nodes, i.e.
the sum / K, and multiplies back. Its quantisation is exact for counts: clipping range R = 2^20 and
2^22 levels make one level 0.5, so an integer count (at most 2^20 per bin and node) is quantised
without rounding; score sums are stochastically rounded to 0.5 (unbiased).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.common import FitRes, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from coordinator.budget_guard import RoundTally
from coordinator.budget_ledger import BudgetLedger
from coordinator.federated_evaluation import EvaluationSummary
from coordinator.job_errors import JobFailedError, JobRefusedError
from coordinator.job_outcome import JobOutcome
from coordinator.job_progress import JobProgress
from coordinator.job_strategy import JobStrategy
from coordinator.secure_sum import CONFIG, PARAMS, ROUND, legacy_context
from coordinator.server_app import make_server_app
from coordinator.strategy_wrapper import aggregate_as_reply
from protocol import EvaluationReply, JobSpec, MalformedReplyError, NodeRecord, RecordKey, TrainReply
from protocol.wire_keys import ConfigKey

__all__ = [
    "SecAggParameters",
    "SecureEvaluation",
    "SecureJobOutcome",
    "SecureRound",
    "make_secure_server_app",
    "secagg_parameters",
]

_NODE_PREFIX = "node."  # fitres.metrics keys of the node record (participant_node.secure_client_app)
_MAX_WEIGHT = 10_000.0  # largest training-member count one node may weigh in with


@dataclass(frozen=True)
class SecAggParameters:
    """The SecAgg+ settings of a job over ``nodes`` nodes (see the module docstring for the sizing)."""

    nodes: int
    num_shares: int
    reconstruction_threshold: int
    clipping_range: float
    quantization_range: int = 2**22
    modulus_range: int = 2**32
    max_weight: float = _MAX_WEIGHT

    def workflow(self, timeout: float) -> SecAggPlusWorkflow:
        # Flower reads an int of 2 shares as invalid; the float 1.0 means "all sampled nodes" and the
        # threshold as a fraction of them rounds back to the integer majority.
        return SecAggPlusWorkflow(
            num_shares=1.0,
            reconstruction_threshold=self.reconstruction_threshold / self.num_shares,
            max_weight=self.max_weight,
            clipping_range=self.clipping_range,
            quantization_range=self.quantization_range,
            modulus_range=self.modulus_range,
            timeout=timeout,
        )

    def card(self) -> dict[str, Any]:
        return {"protocol": "SecAgg+ (Flower SecAggPlusWorkflow)", **self.__dict__}


@dataclass
class SecureJobOutcome(JobOutcome):
    """A job outcome whose training rounds all ran under SecAgg+ (the model card reads ``secagg``)."""

    secagg: SecAggParameters | None = None


def secagg_parameters(job: JobSpec, nodes: int) -> SecAggParameters:
    """Size SecAgg+ to ``nodes`` nodes and the job's DP-SGD update scale."""
    if nodes < 2:
        raise JobRefusedError(f"secure aggregation needs at least 2 nodes, got {nodes}")
    return SecAggParameters(
        nodes=nodes,
        num_shares=nodes,
        reconstruction_threshold=max(2, nodes // 2 + 1),
        clipping_range=2.0 * job.learning_rate * job.local_steps * job.max_grad_norm,
    )


def make_secure_server_app(
    jobs: Sequence[JobSpec] | None,
    *,
    outcome_sink: Callable[[JobOutcome], None] | None = None,
    ledger: BudgetLedger | None = None,
    expected_nodes: int | None = None,
    progress: JobProgress | None = None,
    checkpoint_dir: Path | None = None,
    grid_wrapper: Callable[[Grid], Grid] | None = None,
) -> ServerApp:
    """``server_app.make_server_app`` with SecAgg+ training rounds (``SecureRound``)."""
    return make_server_app(
        jobs,
        outcome_sink=outcome_sink,
        ledger=ledger,
        expected_nodes=expected_nodes,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        train_round=SecureRound,
        new_outcome=lambda job: SecureJobOutcome(job=job),
        grid_wrapper=grid_wrapper,
        evaluate_round=SecureEvaluation,
    )


class SecureRound:
    """One SecAgg+ training round over every connected node, in the run's Flower context."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def __call__(
        self, grid: Grid, strategy: JobStrategy, outcome: JobOutcome, server_round: int
    ) -> ArrayRecord:
        assert outcome.arrays is not None
        job = outcome.job
        node_ids = list(grid.get_node_ids())
        secagg = secagg_parameters(job, len(node_ids))
        results: list[FitRes] = []
        spec: dict[str, Scalar] = {str(ConfigKey.JOB_SPEC): job.to_wire()}
        legacy = legacy_context(
            grid,
            self.context,
            node_ids,
            lambda r: {**spec, ConfigKey.SERVER_ROUND: r},
            results.extend,
        )
        global_weights = outcome.arrays.to_numpy_ndarrays()
        legacy.state.array_records[PARAMS] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(global_weights), keep_input=True
        )
        legacy.state.config_records[CONFIG] = ConfigRecord({ROUND: server_round})
        secagg.workflow(timeout=job.round_timeout_s)(grid, legacy)
        replies = [reply for res in results if (reply := _train_reply(res)) is not None]
        if len(replies) < job.min_nodes:
            raise JobFailedError(
                f"round {server_round}: only {len(replies)} of {len(node_ids)} nodes completed secure "
                f"aggregation; the job needs {job.min_nodes}"
            )
        strategy.guard.record(server_round, replies)
        mean_update = parameters_to_ndarrays(results[0].parameters)
        names = list(outcome.arrays.keys())
        unmasked = ArrayRecord(
            {
                n: Array((w + u).astype(w.dtype))
                for n, w, u in zip(names, global_weights, mean_update, strict=True)
            }
        )
        if strategy.momentum.current_arrays is None:  # FedAvgM keeps it from configure_train otherwise
            strategy.momentum.current_arrays = outcome.arrays
        total = sum(r.num_examples for r in replies)
        loss = sum(r.train_loss * r.num_examples for r in replies) / total
        aggregate = aggregate_as_reply(unmasked, num_examples=total, train_loss=loss)
        arrays, _ = strategy.guard.strategy.aggregate_train(server_round, [aggregate])
        assert arrays is not None
        cpu = sum(r.cpu_seconds for r in replies)
        strategy.guard.tally = RoundTally(len(node_ids), len(replies), cpu, loss)
        if isinstance(outcome, SecureJobOutcome):
            outcome.secagg = secagg
        return arrays


# Evaluation vectors: one quantisation level is 2R / 2^22 = 0.5, so integer counts stay exact.
_COUNT_CLIPPING_RANGE, _COUNT_QUANTIZATION = float(2**20), 2**22


class SecureEvaluation:
    """One SecAgg+ evaluation over every connected node: the coordinator learns only the sum."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def __call__(
        self, grid: Grid, strategy: JobStrategy, job: JobSpec, arrays: ArrayRecord, server_round: int
    ) -> EvaluationSummary:
        evaluation = strategy.evaluation
        layout = evaluation.layout_for(grid, secure=True)
        node_ids = list(grid.get_node_ids())
        base = secagg_parameters(job, len(node_ids))
        results: list[FitRes] = []
        config = {str(k): v for k, v in evaluation.evaluation_config(layout).items()}
        config[ConfigKey.SECURE_SUM] = True
        legacy = legacy_context(
            grid,
            self.context,
            node_ids,
            lambda r: {**config, ConfigKey.SERVER_ROUND: r},  # type: ignore[dict-item]
            results.extend,
        )
        legacy.state.array_records[PARAMS] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(arrays.to_numpy_ndarrays()), keep_input=True
        )
        legacy.state.config_records[CONFIG] = ConfigRecord({ROUND: server_round})
        workflow = SecAggPlusWorkflow(
            num_shares=1.0,
            reconstruction_threshold=base.reconstruction_threshold / base.num_shares,
            max_weight=1.0,
            clipping_range=_COUNT_CLIPPING_RANGE,
            quantization_range=_COUNT_QUANTIZATION,
            modulus_range=base.modulus_range,
            timeout=job.round_timeout_s,
        )
        workflow(grid, legacy)
        replies = [reply for res in results if (reply := _evaluation_reply(res)) is not None]
        if len(replies) < job.min_nodes or len(replies) != len(results):
            raise JobFailedError(
                f"evaluation {server_round}: {len(replies)} of {len(node_ids)} nodes completed the "
                f"secure sum with a well-formed reply; the job needs {job.min_nodes}"
            )
        # The workflow returns the mean of the K summed vectors (each of weight 1).
        mean = parameters_to_ndarrays(results[0].parameters)[0]
        return evaluation.finish(replies, np.asarray(mean, dtype=np.float64) * len(results), secure_sum=True)


def _evaluation_reply(res: FitRes) -> EvaluationReply | None:
    """A node's clear evaluation aggregates in a FitRes (None if malformed)."""
    metrics = {k: v for k, v in res.metrics.items() if not k.startswith(_NODE_PREFIX)}
    node = {k[len(_NODE_PREFIX) :]: v for k, v in res.metrics.items() if k.startswith(_NODE_PREFIX)}
    try:
        record = NodeRecord.parse(RecordDict({RecordKey.NODE: ConfigRecord(node)}))  # type: ignore[arg-type]
        return EvaluationReply.of_metrics(record, metrics, np.zeros(0))
    except MalformedReplyError:
        return None


def _train_reply(res: FitRes) -> TrainReply | None:
    """A node's clear accounting figures in a FitRes, as the protocol's train reply (None if malformed)."""
    metrics = {k: v for k, v in res.metrics.items() if not k.startswith(_NODE_PREFIX)}
    node = {k[len(_NODE_PREFIX) :]: v for k, v in res.metrics.items() if k.startswith(_NODE_PREFIX)}
    content = RecordDict(
        {
            RecordKey.ARRAYS: ArrayRecord(),
            RecordKey.METRICS: MetricRecord({k: v for k, v in metrics.items() if isinstance(v, int | float)}),
            RecordKey.NODE: ConfigRecord(node),  # type: ignore[arg-type]
        }
    )
    try:
        reply = TrainReply.parse(content)
    except MalformedReplyError:
        return None
    return reply if reply.num_examples == res.num_examples else None
