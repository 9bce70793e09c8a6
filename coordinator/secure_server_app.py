"""The coordinator's ServerApp for jobs with secure aggregation (Flower SecAgg+).

Same job life cycle as ``server_app`` (describe the nodes, reserve every partner's ε on the ledger,
train round by round, evaluate from k-member score histograms, settle the ledger with what each node
reports it spent); only the training round differs. Each round runs Flower 1.41's
``SecAggPlusWorkflow`` (which drives the legacy FitIns/FitRes strategy API) over the nodes, so the
server receives one *masked* vector per node and learns only their weighted sum, which it adds to the
global weights: nodes send updates (see ``participant_node.training.secure_client_app``).

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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flwr.compat.common.recorddict_compat as compat
from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.common import FitRes, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_config import JobConfig, StrategyName
from coordinator.job_errors import JobFailedError, JobRefusedError
from coordinator.server_app import (
    JobOutcome,
    NodeReport,
    RoundCallback,
    RoundReport,
    make_server_app,
    record_node_reports,
    run_job,
)

__all__ = [
    "SecAggParameters",
    "SecureJobOutcome",
    "make_secure_server_app",
    "run_secure_job",
    "secagg_parameters",
]

_NODE_PREFIX = "node."  # fitres.metrics keys of the node record (participant_node.secure_client_app)
_PARAMS, _CONFIG, _ROUND = "parameters", "config", "current_round"  # flwr.server.workflow.constant
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


def secagg_parameters(job: JobConfig, nodes: int) -> SecAggParameters:
    """Size SecAgg+ to ``nodes`` nodes and the job's DP-SGD update scale."""
    if nodes < 2:
        raise JobRefusedError(f"secure aggregation needs at least 2 nodes, got {nodes}")
    return SecAggParameters(
        nodes=nodes,
        num_shares=nodes,
        reconstruction_threshold=max(2, nodes // 2 + 1),
        clipping_range=2.0 * job.learning_rate * job.local_steps * job.max_grad_norm,
    )


class _ReportingFedAvg(FedAvg):
    """Legacy FedAvg that keeps the nodes' (clear) accounting metrics of each round's replies."""

    def __init__(self, on_results: Callable[[list[FitRes]], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_results = on_results

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Any, dict[str, Scalar]]:
        self._on_results([res for _, res in results])
        # SecAggPlusWorkflow has put the same unmasked weighted mean into every result: FedAvg's
        # weighted mean of identical vectors returns it unchanged.
        return super().aggregate_fit(server_round, results, failures)


def make_secure_server_app(
    jobs: Sequence[JobConfig] | None,
    *,
    outcome_sink: Callable[[JobOutcome], None] | None = None,
    ledger: BudgetLedger | None = None,
    expected_nodes: int | None = None,
    on_round: RoundCallback | None = None,
    checkpoint_dir: Path | None = None,
    grid_wrapper: Callable[[Grid], Grid] | None = None,
) -> ServerApp:
    """``server_app.make_server_app`` with SecAgg+ training rounds (``run_secure_job``)."""
    return make_server_app(
        jobs,
        outcome_sink=outcome_sink,
        ledger=ledger,
        expected_nodes=expected_nodes,
        on_round=on_round,
        checkpoint_dir=checkpoint_dir,
        runner=run_secure_job,
        grid_wrapper=grid_wrapper,
    )


def run_secure_job(
    grid: Grid,
    context: Context,
    job: JobConfig,
    *,
    expected_nodes: int,
    ledger: BudgetLedger | None = None,
    on_round: RoundCallback | None = None,
    checkpoint_dir: Path | None = None,
) -> JobOutcome:
    """Run ``job`` with SecAgg+ rounds: describe, reserve budgets, train, evaluate, settle."""

    def secure_round(grid: Grid, job: JobConfig, outcome: JobOutcome, server_round: int) -> RoundReport:
        return _secure_round(grid, context, job, outcome, server_round)

    return run_job(
        grid,
        job,
        expected_nodes=expected_nodes,
        ledger=ledger,
        on_round=on_round,
        checkpoint_dir=checkpoint_dir,
        train_round=secure_round,
        outcome_type=SecureJobOutcome,
    )


def _secure_round(
    grid: Grid, context: Context, job: JobConfig, outcome: JobOutcome, server_round: int
) -> RoundReport:
    started = time.perf_counter()
    node_ids = list(grid.get_node_ids())
    secagg = secagg_parameters(job, len(node_ids))
    results: list[FitRes] = []
    legacy = _legacy_context(grid, context, job, node_ids, results.extend)
    assert outcome.arrays is not None
    global_weights = outcome.arrays.to_numpy_ndarrays()
    legacy.state.array_records[_PARAMS] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters(global_weights), keep_input=True
    )
    legacy.state.config_records[_CONFIG] = ConfigRecord({_ROUND: server_round})
    secagg.workflow(timeout=job.round_timeout_s)(grid, legacy)
    if len(results) < job.min_nodes:
        raise JobFailedError(
            f"round {server_round}: only {len(results)} of {len(node_ids)} nodes completed secure "
            f"aggregation; the job needs {job.min_nodes}"
        )
    reports = [_node_report(res) for res in results]
    record_node_reports(job, outcome, reports, server_round)
    mean_update = parameters_to_ndarrays(results[0].parameters)
    names = list(outcome.arrays.keys())
    outcome.arrays = ArrayRecord(
        {
            n: Array((w + u).astype(w.dtype))
            for n, w, u in zip(names, global_weights, mean_update, strict=True)
        }
    )
    if isinstance(outcome, SecureJobOutcome):
        outcome.secagg = secagg
    total = sum(r.num_examples for r in results)
    return RoundReport(
        job_id=job.job_id,
        server_round=server_round,
        nodes_ok=len(results),
        nodes_failed=len(node_ids) - len(results),
        seconds=time.perf_counter() - started,
        train_loss=sum(float(r.metrics["train-loss"]) * r.num_examples for r in results) / total,
        max_epsilon=max(r.epsilon for r in reports),
        node_cpu_seconds=sum(float(r.metrics.get("cpu-seconds", 0.0)) for r in results),
    )


def _legacy_context(
    grid: Grid,
    context: Context,
    job: JobConfig,
    node_ids: list[int],
    on_results: Callable[[list[FitRes]], None],
) -> LegacyContext:
    """A legacy strategy over exactly the connected nodes, sending the job's config to each."""
    manager = SimpleClientManager()
    for node_id in node_ids:
        manager.register(GridClientProxy(node_id, grid, context.run_id))
    config: dict[str, Scalar] = dict(job.node_config())
    if job.strategy is StrategyName.FEDPROX:
        config["proximal-mu"] = job.proximal_mu  # the node adds FedProx's proximal term (Li et al. 2020)

    def fit_config(server_round: int) -> dict[str, Scalar]:
        return {**config, "server-round": server_round}

    n = len(node_ids)
    strategy = _ReportingFedAvg(
        on_results,
        fraction_fit=1.0,
        min_fit_clients=n,
        min_available_clients=n,
        fraction_evaluate=0.0,
        on_fit_config_fn=fit_config,
        fit_metrics_aggregation_fn=lambda _: {},  # per-node reports are read in aggregate_fit
    )
    return LegacyContext(context, strategy=strategy, client_manager=manager)


def _node_report(res: FitRes) -> NodeReport:
    m = res.metrics
    return NodeReport(
        partner_id=str(m[_NODE_PREFIX + "partner-id"]),
        data_fingerprint=str(m[_NODE_PREFIX + "data-fingerprint"]),
        consent_snapshot_hash=str(m[_NODE_PREFIX + "consent-snapshot-hash"]),
        members_used=int(m[_NODE_PREFIX + "members-used"]),
        members_excluded_by_consent=int(m[_NODE_PREFIX + "members-excluded-by-consent"]),
        epsilon=float(m["epsilon"]),
        delta=float(m["delta"]),
        noise_multiplier=float(m["noise-multiplier"]),
        sample_rate=float(m["sample-rate"]),
        steps=int(m["steps"]),
    )
