"""Both networks are Opacus-compatible and produce one logit per example."""

from __future__ import annotations

import pytest
import torch
from opacus import PrivacyEngine
from opacus.validators import ModuleValidator

from models import ModelKind, make_model, predict_proba


@pytest.mark.parametrize("kind", list(ModelKind))
def test_opacus_validates_and_trains_one_private_step(kind: ModelKind) -> None:
    torch.manual_seed(0)
    model = make_model(kind, 25, hidden=8)
    assert ModuleValidator.validate(model, strict=True) == []
    X, y = torch.rand(64, 25), (torch.rand(64) < 0.3).float()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = PrivacyEngine(accountant="rdp")
    private, optimiser, loader = engine.make_private(
        module=model, optimizer=optimiser, data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0
    )
    for xb, yb in loader:
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(private(xb), yb).backward()
        optimiser.step()
    assert engine.get_epsilon(delta=1e-5) > 0
    assert model(X).shape == (64,)
    p = predict_proba(model, X.numpy())
    assert p.shape == (64,) and ((p > 0) & (p < 1)).all()


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_features"):
        make_model("logreg", 0)
    with pytest.raises(ValueError):
        make_model("forest", 3)
