"""Iterate averaging: a strategy wrapper that publishes the mean of the last global models.

Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J. Control
Optim. 30(4), 1992: noisy SGD ends in a cloud around the optimum, and the mean of that cloud is
closer to it than any one point. Composed with Flower's ``FedAvgM`` server momentum (Hsu, Qi &
Brown 2019: the noise of consecutive rounds is independent while the signal is not), both only
transform what the nodes already released, so they are post-processing and cost no privacy (Dwork
& Roth, *The Algorithmic Foundations of Differential Privacy*, Prop. 2.1). On Complete Journey
churn at ε = 1 with 4 store groups, the two together moved the held-out AUC of FedAvg from 0.750
to 0.778–0.784 (median of 6 seeds each, ``bench/fl_utility.py``'s setting).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import Strategy

from coordinator.strategy_wrapper import StrategyWrapper

__all__ = ["IterateAveraging"]


class IterateAveraging(StrategyWrapper):
    """Keeps the last ``average_last`` global models the wrapped strategy aggregated.

    Parameters
    ----------
    strategy
        The aggregation strategy, e.g. ``FedAvgM(server_momentum=0.5)``.
    average_last
        How many of the latest global models ``published`` averages; 1 publishes the last one.
    """

    def __init__(self, strategy: Strategy, *, average_last: int) -> None:
        if average_last < 1:
            raise ValueError(f"average_last must be >= 1, got {average_last}")
        super().__init__(strategy)
        self._recent: deque[ArrayRecord] = deque(maxlen=average_last)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays is not None:
            if self._recent and list(self._recent[-1].keys()) != list(arrays.keys()):
                raise ValueError(f"aggregate has tensors {list(arrays.keys())}, the model has others")
            self._recent.append(arrays)
        return arrays, metrics

    def kept(self) -> list[ArrayRecord]:
        """The latest global models, oldest first (what a round checkpoint saves)."""
        return list(self._recent)

    def restore(self, kept: list[ArrayRecord]) -> None:
        """Keep ``kept`` (a round checkpoint's models, oldest first) as if aggregated here."""
        self._recent.clear()
        self._recent.extend(kept)

    def published(self) -> ArrayRecord | None:
        """The mean of the last ``average_last`` global models (None before the first round)."""
        if not self._recent:
            return None
        keys = list(self._recent[-1].keys())
        stacks = zip(*(r.to_numpy_ndarrays() for r in self._recent), strict=True)
        means = [np.mean(np.stack(tensors), axis=0).astype(tensors[0].dtype) for tensors in stacks]
        return ArrayRecord({k: Array(np.ascontiguousarray(m)) for k, m in zip(keys, means, strict=True)})
