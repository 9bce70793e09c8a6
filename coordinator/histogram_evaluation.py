"""Histogram evaluation: a strategy wrapper that evaluates on every node from k-member histograms.

Each node scores its own held-out members and sends only score histograms whose every bin holds at
least k members, its Brier score and exact AUC (aggregates over ≥ k members); the coordinator pools
them (``coordinator.federated_evaluation``) into the pooled ROC-AUC, PR-AUC, Brier score, each
node's AUC and, where groups reach k members at a node, fairness gaps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from coordinator.federated_evaluation import EvaluationSummary, Histogram, fairness_gaps, summarise
from coordinator.job_errors import JobFailedError
from coordinator.strategy_wrapper import StrategyWrapper
from protocol import EvaluationReply, HistogramCounts, MalformedReplyError, RecordKey

__all__ = ["HistogramEvaluation", "summary_of"]

_log = logging.getLogger(__name__)


class HistogramEvaluation(StrategyWrapper):
    """Evaluates on every connected node; ``last`` holds the latest pooled summary.

    Parameters
    ----------
    strategy
        The wrapped strategy (its evaluation calls are replaced, its training calls kept).
    min_nodes
        Fewer answering nodes than this fail the evaluation (``JobFailedError``).
    """

    def __init__(self, strategy: Strategy, *, min_nodes: int) -> None:
        super().__init__(strategy)
        self.min_nodes = min_nodes
        self.last: EvaluationSummary | None = None

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        content = RecordDict({RecordKey.ARRAYS: arrays, RecordKey.CONFIG: config})
        return [
            Message(content, dst_node_id=node, message_type=MessageType.EVALUATE)
            for node in grid.get_node_ids()
        ]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        parsed = [reply for message in replies if (reply := _parse(server_round, message)) is not None]
        if len(parsed) < self.min_nodes:
            raise JobFailedError(
                f"evaluation: only {len(parsed)} nodes answered; the job needs {self.min_nodes}"
            )
        self.last = summary_of(parsed)
        return MetricRecord({"auc": self.last.auc, "pr-auc": self.last.pr_auc, "brier": self.last.brier})


def _parse(server_round: int, message: Message) -> EvaluationReply | None:
    node = message.metadata.src_node_id
    if message.has_error():
        _log.warning("evaluation %s: node %s failed: %s", server_round, node, message.error.reason)
        return None
    try:
        return EvaluationReply.parse(message.content)
    except MalformedReplyError as err:
        _log.warning("evaluation %s: node %s sent a malformed reply: %s", server_round, node, err)
        return None


def _histogram(partner_id: str, counts: HistogramCounts, *, brier: float, auc: float | None) -> Histogram:
    return Histogram(partner_id, counts.edges, counts.positives, counts.negatives, brier=brier, auc=auc)


def summary_of(replies: list[EvaluationReply]) -> EvaluationSummary:
    """Pooled metrics over the nodes' replies, with fairness gaps where groups reached k members."""
    overall = [_histogram(r.node.partner_id, r.histogram, brier=r.brier, auc=r.auc) for r in replies]
    groups: dict[str, dict[str, list[Histogram]]] = {}
    for reply in replies:
        for (attribute, group), counts in reply.groups.items():
            hist = _histogram(reply.node.partner_id, counts, brier=float("nan"), auc=None)
            groups.setdefault(attribute, {}).setdefault(group, []).append(hist)
    return replace(summarise(overall), fairness=fairness_gaps(overall, groups) if groups else {})
