"""The loss-threshold attack reads an overfitted model and not a model that learnt nothing."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from models.membership_inference import loss_attack
from models.networks import make_model


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 30)).astype(np.float32), (rng.random(n) < 0.5).astype(np.float32)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """A tiny model trains faster on one thread and spares a shared machine; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_memorising_model_is_caught_and_a_blank_one_is_not() -> None:
    torch.manual_seed(0)
    x_in, y_in = _data(60, 1)  # labels are noise: whatever the model learns is memorisation
    x_out, y_out = _data(60, 2)
    model = make_model("mlp", 30, hidden=64)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimiser.zero_grad()
        logits = model(torch.from_numpy(x_in))
        torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(y_in)).backward()
        optimiser.step()
    assert loss_attack(model, (x_in, y_in), (x_out, y_out)).attack_auc > 0.75
    blank = make_model("logreg", 30)
    torch.nn.init.zeros_(blank.linear.weight)
    torch.nn.init.zeros_(blank.linear.bias)
    result = loss_attack(blank, (x_in, y_in), (x_out, y_out))
    assert result.attack_auc == pytest.approx(0.5) and result.members == result.non_members == 60


def test_sets_are_balanced_and_empty_sets_refused() -> None:
    x, y = _data(50, 3)
    result = loss_attack(make_model("logreg", 30), (x, y), (x[:20], y[:20]))
    assert result.members == result.non_members == 20
    with pytest.raises(ValueError, match="at least one"):
        loss_attack(make_model("logreg", 30), (x[:0], y[:0]), (x, y))
