"""Histogram evaluation: a strategy wrapper that pools every node's held-out evaluation vector.

Before its first evaluation it fixes the job's public layout (``protocol.EvaluationLayout``): the
union of the group labels the nodes hold (sent with their feature moments, or asked with
``query.group_labels``) and the bin count -- the fine
grid for an exact secure sum, coarser bins for a noisy release (``noisy_release_bins``: binning
error balanced against noise). Plain evaluation rounds (this wrapper's ``configure_evaluate`` /
``aggregate_evaluate``) receive each node's DP-noised vector and sum them here; secure rounds
(``coordinator.secure_server_app.SecureEvaluation``) receive only the masked sum. Either way
``finish`` turns the total into the pooled summary (``coordinator.federated_evaluation``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from coordinator.federated_evaluation import EvaluationSummary, summarise
from coordinator.job_errors import JobFailedError
from coordinator.strategy_wrapper import StrategyWrapper
from models.score_histogram_metrics import FINE_BINS, gaussian_sigma, noisy_release_bins
from protocol import (
    ConfigKey,
    EvaluationLayout,
    EvaluationReply,
    GroupLabelsReply,
    JobSpec,
    MalformedReplyError,
    QueryAction,
    RecordKey,
    job_config_record,
    query_type,
    release_epsilon,
)

__all__ = ["HistogramEvaluation"]

_log = logging.getLogger(__name__)
# The base rate assumed when sizing a noisy release's bins (public: no label statistic is used).
_ASSUMED_BASE_RATE = 0.2


class HistogramEvaluation(StrategyWrapper):
    """Evaluates on every connected node; ``last`` holds the latest pooled summary.

    Parameters
    ----------
    strategy
        The wrapped strategy (its evaluation calls are replaced, its training calls kept).
    job
        The job (its k, ε, δ and whether the sum runs under secure aggregation).
    """

    def __init__(self, strategy: Strategy, *, job: JobSpec) -> None:
        super().__init__(strategy)
        self.job = job
        self.min_nodes = job.min_nodes
        self.layout: EvaluationLayout | None = None
        self.last: EvaluationSummary | None = None
        self._group_labels: tuple[GroupLabelsReply, ...] | None = None

    def know_group_labels(self, replies: Sequence[GroupLabelsReply]) -> None:
        """Every node's group labels, already sent (with its feature moments): no need to ask."""
        self._group_labels = tuple(replies)

    def layout_for(self, grid: Grid, *, secure: bool) -> EvaluationLayout:
        """The job's evaluation layout, from the labels the nodes sent or asked of them, once."""
        if self.layout is None:
            replies = self._group_labels or _group_labels(grid, self.job)
            self.layout = _layout(replies, self.job, secure=secure, nodes=len(list(grid.get_node_ids())))
        return self.layout

    def evaluation_config(self, layout: EvaluationLayout) -> ConfigRecord:
        config = job_config_record(self.job)
        config[ConfigKey.EVALUATION_LAYOUT] = layout.to_wire()
        return config

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        layout = self.layout_for(grid, secure=False)
        content = RecordDict({RecordKey.ARRAYS: arrays, RecordKey.CONFIG: self.evaluation_config(layout)})
        return [
            Message(content, dst_node_id=node, message_type=MessageType.EVALUATE)
            for node in grid.get_node_ids()
        ]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        assert self.layout is not None, "configure_evaluate fixes the layout first"
        parsed = [
            reply for message in replies if (reply := _parse(server_round, message, self.layout)) is not None
        ]
        if len(parsed) < self.min_nodes:
            raise JobFailedError(
                f"evaluation: only {len(parsed)} nodes answered; the job needs {self.min_nodes}"
            )
        total = np.sum([reply.vector for reply in parsed], axis=0)
        summary = self.finish(parsed, total, secure_sum=False)
        return MetricRecord({"auc": summary.auc, "pr-auc": summary.pr_auc, "brier": summary.brier})

    def finish(
        self, replies: Sequence[EvaluationReply], total: np.ndarray, *, secure_sum: bool
    ) -> EvaluationSummary:
        """The pooled summary of ``total`` (the nodes' summed vectors); kept in ``last``."""
        assert self.layout is not None
        try:
            self.last = summarise(self.layout, total, replies, k=self.job.k_min, secure_sum=secure_sum)
        except ValueError as err:
            raise JobFailedError(f"evaluation: {err}") from err
        return self.last


def _parse(server_round: int, message: Message, layout: EvaluationLayout) -> EvaluationReply | None:
    node = message.metadata.src_node_id
    if message.has_error():
        _log.warning("evaluation %s: node %s failed: %s", server_round, node, message.error.reason)
        return None
    try:
        reply = EvaluationReply.parse(message.content)
        layout.split(reply.vector)  # the node used the job's layout
        if reply.noise_sigma <= 0:
            raise MalformedReplyError("a node's vector seen alone must carry DP noise")
        return reply
    except MalformedReplyError as err:
        _log.warning("evaluation %s: node %s sent a malformed reply: %s", server_round, node, err)
        return None


def _group_labels(grid: Grid, job: JobSpec) -> list[GroupLabelsReply]:
    """Ask every node for its held-out group labels (``query.group_labels``)."""
    content = RecordDict({RecordKey.CONFIG: job_config_record(job)})
    kind = query_type(QueryAction.GROUP_LABELS)
    messages = [Message(content, dst_node_id=n, message_type=kind) for n in grid.get_node_ids()]
    replies = []
    for reply in grid.send_and_receive(messages, timeout=job.round_timeout_s):
        if reply.has_error():
            continue
        try:
            replies.append(GroupLabelsReply.parse(reply.content))
        except MalformedReplyError as err:
            _log.warning("group labels: node %s sent a malformed reply: %s", reply.metadata.src_node_id, err)
    return replies


def _layout(
    replies: Sequence[GroupLabelsReply], job: JobSpec, *, secure: bool, nodes: int
) -> EvaluationLayout:
    """Union of the nodes' group labels; bins for an exact sum or sized to the release's noise."""
    labels = {label for reply in replies for label in reply.labels}
    heldout = sum(reply.heldout_members for reply in replies)
    epsilon = release_epsilon(job, secure=secure)
    if epsilon <= 0:
        return EvaluationLayout(FINE_BINS, tuple(sorted(labels)))
    attributes = len({a for a, _ in labels})
    # σ of the summed counts, by the analytic Gaussian mechanism for all planned releases at once
    # (the node's RDP calibration is close to it); sizing only, the node decides its own noise.
    per_node = gaussian_sigma(epsilon=epsilon, delta=job.delta) * math.sqrt(
        job.evaluations_planned * (1 + attributes)
    )
    sigma = per_node if secure else per_node * math.sqrt(nodes)
    bins = noisy_release_bins(sigma=sigma, expected_members=heldout, base_rate=_ASSUMED_BASE_RATE)
    return EvaluationLayout(bins, tuple(sorted(labels)))
