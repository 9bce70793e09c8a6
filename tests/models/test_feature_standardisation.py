"""Pooled standardisation: moments pool exactly, the map standardises, folding is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.feature_standardisation import FeatureMoments, Standardisation
from models.networks import make_model


def _rows(seed: int, n: int, d: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.beta(2.0, 5.0, size=(n, d)) * rng.uniform(0.05, 1.0, size=d)


def test_pooled_moments_are_the_moments_of_all_members() -> None:
    parts = [_rows(0, 30), _rows(1, 45), _rows(2, 21)]
    pooled = FeatureMoments.pooled(FeatureMoments.of(p) for p in parts)
    whole = FeatureMoments.of(np.vstack(parts))
    assert pooled.count == whole.count == 96
    np.testing.assert_allclose(pooled.sums, whole.sums, rtol=1e-12)
    np.testing.assert_allclose(pooled.sums_of_squares, whole.sums_of_squares, rtol=1e-12)


def test_standardised_rows_are_centred_with_unit_expected_squared_norm() -> None:
    X = _rows(3, 500, d=7)
    standardised = FeatureMoments.of(X).standardisation().apply(X)
    assert standardised.dtype == np.float32
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-5)
    # scale = std * sqrt(d): every column has variance 1/d, so E||x||^2 = 1 whatever d is.
    np.testing.assert_allclose(standardised.var(axis=0), 1 / 7, rtol=1e-4)
    assert np.mean(np.sum(standardised.astype(np.float64) ** 2, axis=1)) == pytest.approx(1.0, rel=1e-4)


def test_a_constant_feature_is_centred_not_blown_up() -> None:
    X = _rows(4, 50)
    X[:, 2] = 0.25
    standardisation = FeatureMoments.of(X).standardisation()
    out = standardisation.apply(X)
    assert np.all(np.isfinite(out)) and np.allclose(out[:, 2], 0.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_folding_into_the_input_layer_gives_the_same_scores_on_public_rows(kind: str) -> None:
    X = _rows(5, 200)
    standardisation = FeatureMoments.of(X[:120]).standardisation()
    torch.manual_seed(0)
    model = make_model(kind, X.shape[1])
    with torch.no_grad():
        before = model(torch.from_numpy(standardisation.apply(X))).numpy()
        after = standardisation.fold_into(model)(torch.from_numpy(X.astype(np.float32))).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Standardisation(mean=(0.0, 1.0), scale=(1.0,))
    with pytest.raises(ValueError, match="positive"):
        Standardisation(mean=(0.0,), scale=(0.0,))
    with pytest.raises(ValueError, match="different feature widths"):
        FeatureMoments.pooled([FeatureMoments.of(_rows(0, 5, d=3)), FeatureMoments.of(_rows(0, 5, d=4))])
    with pytest.raises(ValueError, match="at least 2 members"):
        FeatureMoments.of(_rows(0, 1)).standardisation()
    with pytest.raises(ValueError, match="for 5 features, the model takes 3"):
        FeatureMoments.of(_rows(0, 9)).standardisation().fold_into(make_model("logreg", 3))
