"""The budget guard: a strategy wrapper that admits only well-formed, in-budget node updates.

Around the aggregation strategy, each training round it

* stops the job when a node refuses it (``protocol.Refusal``: its officer's approval, its own
  accountant or its consent gate said no): the job fails with the node's own reason;
* drops error replies and malformed ones (``MalformedReplyError``), which count as failed nodes,
  and fails the round when fewer than the job's ``min_nodes`` updates remain;
* stops the job when a node reports having spent more than the job's ε (1% slack for the
  calibration's tolerance): the nodes refuse to overspend, so this means a node is broken;
* keeps every node's latest accounting report for the model card and the ledger.

What a node spent is settled from its own accountant at the end of the job
(``coordinator.budget_settlement``), whether or not its replies arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from coordinator.job_errors import JobFailedError, JobRefusedError
from coordinator.job_outcome import NodeReport
from coordinator.node_refusal import RefusalCallback, refuse_if_refused
from coordinator.strategy_wrapper import StrategyWrapper
from protocol import JobSpec, MalformedReplyError, TrainReply
from protocol.wire_keys import TrainKey

__all__ = ["BudgetGuard", "RoundTally"]

_log = logging.getLogger(__name__)
_EPSILON_SLACK = 1.01  # the accountant's calibration tolerance, nothing more


@dataclass(frozen=True)
class RoundTally:
    """How one training round went, as the guard saw it."""

    sampled: int
    accepted: int
    cpu_seconds: float
    train_loss: float  # weighted by training members, as the strategy aggregated it


class BudgetGuard(StrategyWrapper):
    """Wraps ``strategy``; see the module docstring for what it admits.

    Parameters
    ----------
    strategy
        The aggregation strategy (e.g. ``IterateAveraging(FedAvgM(...))``).
    job
        The job whose ε and ``min_nodes`` the guard enforces.
    on_refusal
        Called with a node's refusal before the job stops (the coordinator shows it).
    """

    def __init__(
        self, strategy: Strategy, job: JobSpec, *, on_refusal: RefusalCallback | None = None
    ) -> None:
        super().__init__(strategy)
        self.job = job
        self.reports: dict[str, NodeReport] = {}
        self.tally: RoundTally | None = None
        self._on_refusal = on_refusal
        self._sampled = 0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._sampled = len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        admitted = self.admit(server_round, replies, sampled=self._sampled)
        arrays, metrics = self.strategy.aggregate_train(server_round, [m for m, _ in admitted])
        if arrays is None:
            raise JobFailedError(f"round {server_round}: aggregation produced no model")
        loss = metrics.get(TrainKey.TRAIN_LOSS) if metrics is not None else None
        self.tally = RoundTally(
            sampled=self._sampled,
            accepted=len(admitted),
            cpu_seconds=sum(r.cpu_seconds for _, r in admitted),
            train_loss=float(loss) if isinstance(loss, int | float) else float("nan"),
        )
        return arrays, metrics

    def admit(
        self, server_round: int, replies: Iterable[Message], *, sampled: int
    ) -> list[tuple[Message, TrainReply]]:
        """The well-formed train replies of a round, their reports recorded; refuse or fail the job."""
        admitted: list[tuple[Message, TrainReply]] = []
        for message in replies:
            reply = self._parse(server_round, message)
            if reply is not None:
                admitted.append((message, reply))
        if len(admitted) < self.job.min_nodes:
            raise JobFailedError(
                f"round {server_round}: only {len(admitted)} of {sampled} nodes answered; "
                f"the job needs {self.job.min_nodes}"
            )
        self.record(server_round, [reply for _, reply in admitted])
        return admitted

    def record(self, server_round: int, replies: Sequence[TrainReply]) -> None:
        """Keep each node's latest report; stop the job if any node spent more ε than the job allows."""
        for reply in replies:
            if reply.epsilon > self.job.epsilon * _EPSILON_SLACK:
                raise JobRefusedError(
                    f"round {server_round}: {reply.node.partner_id} reports ε={reply.epsilon:.3f} above "
                    f"the job's ε={self.job.epsilon}; the job is stopped"
                )
            self.reports[reply.node.partner_id] = NodeReport.of(reply)

    def _parse(self, server_round: int, message: Message) -> TrainReply | None:
        node = message.metadata.src_node_id
        if message.has_error():
            _log.warning("round %s: node %s failed: %s", server_round, node, message.error.reason)
            return None
        try:
            refuse_if_refused(message, self._on_refusal)
            return TrainReply.parse(message.content)
        except MalformedReplyError as err:
            _log.warning("round %s: node %s sent a malformed reply: %s", server_round, node, err)
            return None
