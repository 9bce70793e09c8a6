"""A Flower strategy that wraps another, as Flower composes its DP strategies around FedAvg.

A wrapper delegates every call to the strategy it wraps and overrides only what it guards
(``flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping`` is built the same way).
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from protocol import RecordKey
from protocol.wire_keys import TrainKey

__all__ = ["StrategyWrapper", "aggregate_as_reply"]


class StrategyWrapper(Strategy):
    """Delegates to ``strategy``; subclasses override the calls they guard."""

    def __init__(self, strategy: Strategy) -> None:
        super().__init__()
        self.strategy = strategy

    def summary(self) -> None:
        log(INFO, "\t├──> %s wraps:", type(self).__name__)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)


def aggregate_as_reply(arrays: ArrayRecord, *, num_examples: int, train_loss: float) -> Message:
    """A reply standing for a model aggregated elsewhere (SecAgg+ unmasks only the weighted sum), so
    that it passes through the same strategy stack (server momentum, iterate averaging) as plain rounds."""
    metrics = MetricRecord({TrainKey.NUM_EXAMPLES: num_examples, TrainKey.TRAIN_LOSS: train_loss})
    content = RecordDict({RecordKey.ARRAYS: arrays, RecordKey.METRICS: metrics})
    return Message(content, dst_node_id=0, message_type=MessageType.TRAIN)
