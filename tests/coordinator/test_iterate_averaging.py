"""Server momentum (Flower's FedAvgM) and iterate averaging: the arithmetic, composed as wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvgM

from coordinator.iterate_averaging import IterateAveraging
from coordinator.strategy_wrapper import aggregate_as_reply

pytestmark = pytest.mark.usefixtures("in_a_flower_run")


def _record(weight: list[float], bias: float) -> ArrayRecord:
    return ArrayRecord(torch_state_dict={"w": torch.tensor([weight]), "b": torch.tensor([bias])})


def _stack(start: ArrayRecord, *, momentum: float, average_last: int) -> IterateAveraging:
    base = FedAvgM(server_momentum=momentum)
    base.current_arrays = start  # what configure_train records before round 1
    return IterateAveraging(base, average_last=average_last)


def _step(strategy: IterateAveraging, server_round: int, aggregate: ArrayRecord) -> ArrayRecord:
    reply = aggregate_as_reply(aggregate, num_examples=100, train_loss=0.5)
    arrays, metrics = strategy.aggregate_train(server_round, [reply])
    assert arrays is not None and metrics is not None and metrics["train-loss"] == pytest.approx(0.5)
    return arrays


def test_zero_momentum_and_one_model_is_plain_averaging() -> None:
    strategy = _stack(_record([0.0, 0.0], 0.0), momentum=0.0, average_last=1)
    for server_round, aggregate in enumerate((_record([1.0, 2.0], 0.5), _record([3.0, -1.0], 1.5)), 1):
        current = _step(strategy, server_round, aggregate)
        for got, want in zip(current.to_numpy_ndarrays(), aggregate.to_numpy_ndarrays(), strict=True):
            np.testing.assert_allclose(got, want)
    published = strategy.published()
    assert published is not None
    np.testing.assert_allclose(published.to_numpy_ndarrays()[0], [[3.0, -1.0]])


def test_momentum_accumulates_the_velocity() -> None:
    strategy = _stack(_record([0.0, 0.0], 0.0), momentum=0.5, average_last=1)
    first = _step(strategy, 1, _record([1.0, 1.0], 0.0))  # v = Δ = 1
    np.testing.assert_allclose(first.to_numpy_ndarrays()[0], [[1.0, 1.0]])
    # Δ = 2 - 1 = 1, v = 0.5 * 1 + 1 = 1.5, global = 1 + 1.5
    second = _step(strategy, 2, _record([2.0, 2.0], 0.0))
    np.testing.assert_allclose(second.to_numpy_ndarrays()[0], [[2.5, 2.5]])


def test_published_model_is_the_mean_of_the_last_globals() -> None:
    strategy = _stack(_record([0.0, 0.0], 0.0), momentum=0.0, average_last=2)
    assert strategy.published() is None
    for server_round, value in enumerate((4.0, 6.0, 10.0), 1):
        _step(strategy, server_round, _record([value, -value], value))
    published = strategy.published()
    assert published is not None
    assert list(published.keys()) == ["w", "b"]
    weight, bias = published.to_numpy_ndarrays()
    np.testing.assert_allclose(weight, [[8.0, -8.0]])
    np.testing.assert_allclose(bias, [8.0])


def test_rejects_bad_settings_and_mismatched_models() -> None:
    with pytest.raises(ValueError, match="average_last"):
        IterateAveraging(FedAvgM(), average_last=0)
    strategy = _stack(_record([0.0, 0.0], 0.0), momentum=0.0, average_last=2)
    _step(strategy, 1, _record([1.0, 1.0], 0.0))
    other = ArrayRecord(torch_state_dict={"v": torch.zeros(1, 2), "b": torch.zeros(1)})
    with pytest.raises(ValueError, match="tensors"):
        _step(strategy, 2, other)
