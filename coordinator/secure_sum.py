"""SecAgg+ over the nodes through Flower's legacy workflow, and exact sums of integer vectors with it.

Flower 1.41's ``SecAggPlusWorkflow`` drives the legacy FitIns/FitRes strategy API: ``legacy_context``
builds that strategy over exactly the connected nodes, each FitIns carrying ``fit_config``; every
node's FitRes (its clear metrics, and after unmasking the aggregate) is handed to ``on_results``.
Secure training rounds (``coordinator.secure_server_app``) and ``secure_integer_sum`` share it.

``secure_integer_sum``: each node replies with integer vectors in [0, R] and weight 1 (the node side
is ``participant_node.training.secure_client_app.integer_vector_fitres``), e.g. k-member score
histograms. SecAgg+ (Bell et al., CCS 2020) quantises x in [-R, R] to round((x + R) · T / 2R) and
scales by weight / max_weight; with max_weight = 1 and T = 2R this is the shift x + R, exact for
integers (Flower's stochastic rounding leaves integers unchanged), and the server's dequantised
result is the mean over the n nodes whose vectors survived: n · mean is the exact integer sum. The
masked sums stay below the modulus 2^32 while n · 2R < 2^32 (checked), so nothing wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import ConfigRecord, Context
from flwr.common import FitRes, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid

from coordinator.job_errors import JobFailedError, JobRefusedError
from protocol.wire_keys import ConfigKey

__all__ = ["IntegerSum", "ReportingFedAvg", "legacy_context", "secure_integer_sum"]

PARAMS, CONFIG, ROUND = "parameters", "config", "current_round"  # flwr.server.workflow.constant
_MODULUS = 2**32


class ReportingFedAvg(FedAvg):
    """Legacy FedAvg that hands each round's FitRes (the nodes' clear metrics) to ``on_results``."""

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


def legacy_context(
    grid: Grid,
    context: Context,
    node_ids: list[int],
    fit_config: Callable[[int], dict[str, Scalar]],
    on_results: Callable[[list[FitRes]], None],
) -> LegacyContext:
    """A legacy strategy over exactly ``node_ids``, sending ``fit_config(round)`` to each."""
    manager = SimpleClientManager()
    for node_id in node_ids:
        manager.register(GridClientProxy(node_id, grid, context.run_id))
    n = len(node_ids)
    strategy = ReportingFedAvg(
        on_results,
        fraction_fit=1.0,
        min_fit_clients=n,
        min_available_clients=n,
        fraction_evaluate=0.0,
        on_fit_config_fn=fit_config,
        fit_metrics_aggregation_fn=lambda _: {},  # per-node reports are read in aggregate_fit
    )
    return LegacyContext(context, strategy=strategy, client_manager=manager)


@dataclass(frozen=True)
class IntegerSum:
    """The exact sum of the surviving nodes' integer vectors, and each survivor's clear metrics."""

    totals: list[np.ndarray]
    nodes: int
    metrics: list[Mapping[str, Scalar]]


def secure_integer_sum(
    grid: Grid,
    context: Context,
    node_ids: list[int],
    *,
    config: Mapping[str, Scalar],
    max_value: int,
    timeout: float,
    min_nodes: int = 2,
) -> IntegerSum:
    """Sum the nodes' integer vectors (each entry in [0, ``max_value``]) under SecAgg+; raise if
    fewer than ``min_nodes`` nodes' vectors survive. The threshold is a strict majority of shares."""
    n = len(node_ids)
    if n < 2 or min_nodes < 2:
        raise JobRefusedError(f"a secure sum needs at least 2 nodes, got {n} (min_nodes={min_nodes})")
    if max_value < 1 or n * 2 * max_value >= _MODULUS:
        raise JobRefusedError(f"{n} nodes x values up to {max_value} would wrap the 2^32 modulus")
    results: list[FitRes] = []
    legacy = legacy_context(
        grid, context, node_ids, lambda r: {**config, ConfigKey.SERVER_ROUND: r}, results.extend
    )
    legacy.state.array_records[PARAMS] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([]), keep_input=True
    )
    legacy.state.config_records[CONFIG] = ConfigRecord({ROUND: 1})
    SecAggPlusWorkflow(
        num_shares=1.0,
        reconstruction_threshold=(n // 2 + 1) / n,
        max_weight=1.0,
        clipping_range=float(max_value),
        quantization_range=2 * max_value,
        modulus_range=_MODULUS,
        timeout=timeout,
    )(grid, legacy)
    if len(results) < min_nodes:
        raise JobFailedError(f"secure sum: only {len(results)} of {n} nodes' vectors survived")
    mean = parameters_to_ndarrays(results[0].parameters)
    totals = [np.rint(v * len(results)).astype(np.int64) for v in mean]
    return IntegerSum(totals=totals, nodes=len(results), metrics=[dict(r.metrics) for r in results])
