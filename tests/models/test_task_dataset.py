"""Task datasets on the Complete Journey federation, the shared held-out split, centralized training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import (
    ModelKind,
    Task,
    TaskDataset,
    build_task_dataset,
    default_feature_schema,
    heldout_mask,
    task_defaults,
    train_centralized,
)
from models.errors import ModelError
from participant_node.data import load_partner

SCHEMA = default_feature_schema()


@pytest.fixture(scope="module")
def north(cj_federation: Path) -> dict[Task, TaskDataset]:
    data = load_partner(cj_federation / "freshmart-north")
    out = {}
    for task in Task:
        as_of, horizon = task_defaults(task)
        out[task] = build_task_dataset(
            data.members,
            data.transactions,
            data.campaigns,
            task=task,
            as_of=as_of,
            horizon_days=horizon,
            schema=SCHEMA,
        )
    return out


def test_build_task_dataset_on_complete_journey(north: dict[Task, TaskDataset]) -> None:
    churn, propensity = north[Task.CHURN], north[Task.PROPENSITY]
    for data in (churn, propensity):
        assert data.X.dtype == np.float32 and data.y.dtype == np.float32
        assert data.X.shape == (len(data), SCHEMA.n_features)
        assert data.X.min() >= 0.0 and data.X.max() <= 1.0
        assert len(set(data.member_ids)) == len(data)
        assert {"age_band", "income_band"} <= set(data.groups)
    assert 400 < len(churn) < 800 and 0.05 < churn.base_rate < 0.30
    assert 200 < len(propensity) < 500 and 0.10 < propensity.base_rate < 0.40


def test_propensity_without_campaigns_is_a_model_error(cj_federation: Path) -> None:
    data = load_partner(cj_federation / "freshmart-north")
    with pytest.raises(ModelError, match="campaigns"):
        build_task_dataset(
            data.members,
            data.transactions,
            None,
            task="propensity",
            as_of="2017-06-01",
            horizon_days=30,
            schema=SCHEMA,
        )


def test_heldout_mask_is_deterministic_and_about_a_fifth() -> None:
    ids = [f"FM-{i:06d}" for i in range(20_000)]
    mask = heldout_mask(ids)
    assert mask.mean() == pytest.approx(0.2, abs=0.01)
    np.testing.assert_array_equal(mask, heldout_mask(list(reversed(ids)))[::-1])
    assert not np.array_equal(mask, heldout_mask(ids, salt="other"))
    with pytest.raises(ValueError, match="fraction"):
        heldout_mask(ids, fraction=1.0)


def test_concatenate_refuses_other_schemas(north: dict[Task, TaskDataset]) -> None:
    pooled = TaskDataset.concatenate([north[Task.CHURN], north[Task.CHURN]])
    assert len(pooled) == 2 * len(north[Task.CHURN])
    with pytest.raises(ModelError, match="different"):
        TaskDataset.concatenate([north[Task.CHURN], north[Task.PROPENSITY]])


def test_centralized_training_beats_chance_on_heldout(north: dict[Task, TaskDataset]) -> None:
    _, metrics = train_centralized(north[Task.CHURN], kind=ModelKind.LOGREG, epochs=15, seed=0)
    assert metrics["auc"] > 0.6
    assert metrics["n"] == heldout_mask(north[Task.CHURN].member_ids).sum()
    _, again = train_centralized(north[Task.CHURN], kind=ModelKind.LOGREG, epochs=15, seed=0)
    assert again["auc"] == metrics["auc"]  # seeded: reproducible
