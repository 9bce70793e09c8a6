"""Server momentum and iterate averaging: the arithmetic, and that they only post-process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from coordinator.server_optimizer import ServerOptimizer


def _record(weight: list[float], bias: float) -> ArrayRecord:
    return ArrayRecord(torch_state_dict={"w": torch.tensor([weight]), "b": torch.tensor([bias])})


def _arrays(record: ArrayRecord) -> list[np.ndarray]:
    return record.to_numpy_ndarrays()


def test_zero_momentum_and_one_model_is_plain_averaging() -> None:
    optimizer = ServerOptimizer(momentum=0.0, average_last=1)
    current = _record([0.0, 0.0], 0.0)
    for aggregate in (_record([1.0, 2.0], 0.5), _record([3.0, -1.0], 1.5)):
        current = optimizer.step(current, aggregate)
        for got, want in zip(_arrays(current), _arrays(aggregate), strict=True):
            np.testing.assert_allclose(got, want)
    published = optimizer.published()
    assert published is not None
    np.testing.assert_allclose(_arrays(published)[0], [[3.0, -1.0]])


def test_momentum_accumulates_the_velocity() -> None:
    optimizer = ServerOptimizer(momentum=0.5, average_last=1)
    start = _record([0.0, 0.0], 0.0)
    first = optimizer.step(start, _record([1.0, 1.0], 0.0))  # v = Δ = 1
    np.testing.assert_allclose(_arrays(first)[0], [[1.0, 1.0]])
    # Δ = 2 - 1 = 1, v = 0.5 * 1 + 1 = 1.5, global = 1 + 1.5
    second = optimizer.step(first, _record([2.0, 2.0], 0.0))
    np.testing.assert_allclose(_arrays(second)[0], [[2.5, 2.5]])


def test_published_model_is_the_mean_of_the_last_globals() -> None:
    optimizer = ServerOptimizer(momentum=0.0, average_last=2)
    assert optimizer.published() is None
    current = _record([0.0, 0.0], 0.0)
    for value in (4.0, 6.0, 10.0):
        current = optimizer.step(current, _record([value, -value], value))
    published = optimizer.published()
    assert published is not None
    assert list(published.keys()) == ["w", "b"]
    weight, bias = _arrays(published)
    np.testing.assert_allclose(weight, [[8.0, -8.0]])
    np.testing.assert_allclose(bias, [8.0])


def test_rejects_bad_settings_and_mismatched_models() -> None:
    with pytest.raises(ValueError, match="momentum"):
        ServerOptimizer(momentum=1.0, average_last=1)
    with pytest.raises(ValueError, match="average_last"):
        ServerOptimizer(momentum=0.0, average_last=0)
    optimizer = ServerOptimizer(momentum=0.0, average_last=1)
    other = ArrayRecord(torch_state_dict={"v": torch.zeros(1, 2), "b": torch.zeros(1)})
    with pytest.raises(ValueError, match="tensors"):
        optimizer.step(_record([0.0, 0.0], 0.0), other)
