"""A complete, valid model card for tests that need a published model folder (``protocol.ModelCard``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from models.feature_schema import default_feature_schema
from policies.purpose import purpose_of_training_task
from protocol import ModelCard
from protocol.model_card import CardDpSgd, CardFeatureSchema, CardMetrics, CardRocCurve

__all__ = ["example_card"]


def example_card(
    task: str = "churn", *, base_rate: float | None = 0.2, as_of: date = date(2017, 9, 1)
) -> ModelCard:
    """A logistic-regression card on the default feature schema; no metrics when ``base_rate`` is None."""
    schema = default_feature_schema()
    metrics = CardMetrics(
        auc=0.7, pr_auc=0.5, brier=0.2, base_rate=base_rate or 0.0, node_auc={},
        fairness_gaps={"not_reported": "no group of k members"}, evaluation="k-member histograms",
        roc_curve=CardRocCurve(fpr=[0.0, 1.0], tpr=[0.0, 1.0]),
    )  # fmt: skip
    return ModelCard(
        job_id="example", task=task, purpose=purpose_of_training_task(task).value, model="logreg",
        strategy="fedavg", proximal_mu=0.0, secure_aggregation=False, rounds=1, rounds_planned=1,
        stopped_early=False, local_steps_per_round=1,
        dp_sgd=CardDpSgd(expected_batch_size=256, learning_rate=1.0, max_grad_norm=0.3),
        server_momentum=0.0, published_model="the last global model", target_epsilon=1.0, delta=1e-5,
        accountant="RDP", epsilon_worst_case_member=1.0, epsilon_composition_across_nodes="max", k_min=20,
        as_of=as_of, horizon_days=90,
        feature_schema=CardFeatureSchema(fingerprint=schema.fingerprint, features=list(schema.names)),
        nodes=[], metrics=None if base_rate is None else metrics, mechanisms={}, data_fingerprints={},
        lineage_id="example", created_at=datetime(2026, 1, 1, tzinfo=UTC), heldout_members=100,
    )  # fmt: skip
