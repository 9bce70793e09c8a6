"""The scaled-intercept parametrisation computes the same logits and gives back a plain model."""

from __future__ import annotations

import pytest
import torch

from models.networks import LogisticRegression, make_model
from models.scaled_intercept import ScaledInterceptLogisticRegression


def _model(seed: int = 0) -> LogisticRegression:
    torch.manual_seed(seed)
    model = make_model("logreg", 6)
    assert isinstance(model, LogisticRegression)
    return model


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.1])
def test_same_logits_as_the_model_it_reparametrises(scale: float) -> None:
    model = _model()
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    scaled = ScaledInterceptLogisticRegression(model, scale=scale)
    assert torch.allclose(scaled(x), model(x), atol=1e-6)
    assert scaled.linear.bias is None and scaled.linear.weight.shape == (1, 7)


def test_write_back_carries_a_changed_intercept_at_its_scale() -> None:
    model, x = _model(), torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    scaled = ScaledInterceptLogisticRegression(model, scale=0.5)
    with torch.no_grad():
        scaled.linear.weight[0, -1] += 1.0  # +1 on the stored b / scale is +0.5 on the intercept
    expected = scaled(x)
    bias_before = float(model.linear.bias)
    scaled.write_back(model)
    assert float(model.linear.bias) == pytest.approx(bias_before + 0.5, abs=1e-6)
    assert torch.allclose(model(x), expected, atol=1e-6)


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5])
def test_a_scale_outside_zero_one_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="intercept's input scale"):
        ScaledInterceptLogisticRegression(_model(), scale=scale)


def test_write_back_refuses_a_model_of_another_width() -> None:
    scaled = ScaledInterceptLogisticRegression(_model(), scale=0.5)
    torch.manual_seed(0)
    other = make_model("logreg", 4)
    assert isinstance(other, LogisticRegression)
    with pytest.raises(ValueError, match="6 features, the model 4"):
        scaled.write_back(other)
