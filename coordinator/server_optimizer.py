"""Server-side momentum and iterate averaging over the aggregated DP updates.

Both only transform what the nodes already released (their DP-SGD models), so they are
post-processing and cost no privacy (Dwork & Roth, *The Algorithmic Foundations of Differential
Privacy*, Prop. 2.1). Both fight the noise the nodes add:

* **Server momentum** (FedAvgM; Hsu, Qi & Brown, "Measuring the Effects of Non-Identical Data
  Distribution for Federated Visual Classification", 2019): the round's pseudo-gradient
  ``Δ = aggregate - global`` feeds a velocity ``v ← β·v + Δ`` and the new global model is
  ``global + v``. The noise of consecutive rounds is independent while the signal is not, so the
  velocity accumulates signal faster than noise.
* **Iterate averaging** (Polyak & Juditsky, "Acceleration of Stochastic Approximation by
  Averaging", SIAM J. Control Optim. 30(4), 1992): the published model is the mean of the last
  ``average_last`` global models. Noisy SGD ends in a cloud around the optimum; the mean of that
  cloud is closer to it than any one point.

On Complete Journey churn at ε = 1 with 4 store groups, the two together moved the held-out AUC of
FedAvg from 0.750 to 0.778–0.784 (median of 6 seeds each, ``bench/fl_utility.py``'s setting).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from flwr.app import ArrayRecord

__all__ = ["ServerOptimizer"]


class ServerOptimizer:
    """Turns each round's aggregate into the next global model and remembers recent globals.

    Parameters
    ----------
    momentum
        β in ``v ← β·v + Δ``; 0 is plain FedAvg/FedProx (the aggregate becomes the global model).
    average_last
        How many of the latest global models `published` averages; 1 publishes the last one.
    """

    def __init__(self, *, momentum: float, average_last: int) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"server momentum must be in [0, 1), got {momentum}")
        if average_last < 1:
            raise ValueError(f"average_last must be >= 1, got {average_last}")
        self.momentum = momentum
        self._velocity: list[np.ndarray] | None = None
        self._recent: deque[list[np.ndarray]] = deque(maxlen=average_last)
        self._keys: list[str] = []

    def step(self, current: ArrayRecord, aggregate: ArrayRecord) -> ArrayRecord:
        """The next global model from the current one and this round's aggregate."""
        keys = list(current.keys())
        if keys != list(aggregate.keys()):
            raise ValueError(f"aggregate has tensors {list(aggregate.keys())}, the model has {keys}")
        here, there = current.to_numpy_ndarrays(), aggregate.to_numpy_ndarrays()
        delta = [a - c for a, c in zip(there, here, strict=True)]
        if self._velocity is None:
            self._velocity = delta
        else:
            self._velocity = [self.momentum * v + d for v, d in zip(self._velocity, delta, strict=True)]
        updated = [c + v for c, v in zip(here, self._velocity, strict=True)]
        self._keys = keys
        self._recent.append(updated)
        return _record(keys, updated)

    def published(self) -> ArrayRecord | None:
        """The mean of the last ``average_last`` global models (None before the first step)."""
        if not self._recent:
            return None
        mean = [np.mean(np.stack(tensors), axis=0) for tensors in zip(*self._recent, strict=True)]
        return _record(self._keys, mean)


def _record(keys: list[str], arrays: list[np.ndarray]) -> ArrayRecord:
    return ArrayRecord(
        torch_state_dict={
            k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in zip(keys, arrays, strict=True)
        }
    )
