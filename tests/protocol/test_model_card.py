"""The model card is written and read through one module, typed and versioned."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from protocol import ModelCard, ModelCardError, read_model_card, write_model_card
from protocol.model_card import CardDpSgd, CardFeatureSchema, CardNode


def _card() -> ModelCard:
    node = CardNode(
        partner_id="freshmart-north", members_used=500, members_excluded_by_consent=3, epsilon=0.99,
        delta=1e-5, noise_multiplier=1.1, sample_rate=0.5, steps=40, consent_snapshot_hash="c" * 64,
    )  # fmt: skip
    return ModelCard(
        job_id="job-1", task="churn", purpose="analytics.churn_model", model="logreg", strategy="fedavg",
        proximal_mu=0.0, secure_aggregation=False, policy_id="churn-2026", policy_version=1,
        policy_hash="ab" * 32, rounds=8, rounds_planned=8, stopped_early=False, local_steps_per_round=5,
        dp_sgd=CardDpSgd(expected_batch_size=256, learning_rate=1.0, max_grad_norm=0.3),
        server_momentum=0.5, published_model="mean of the last 4 global models", target_epsilon=1.0,
        delta=1e-5, accountant="RDP", epsilon_worst_case_member=0.99,
        epsilon_composition_across_nodes="max over nodes", k_min=20, as_of=date(2017, 9, 1),
        horizon_days=90, feature_schema=CardFeatureSchema(fingerprint="f" * 16, features=["recency"]),
        nodes=[node], mechanisms={"model_updates": "DP-SGD"}, data_fingerprints={"freshmart-north": "d"},
        lineage_id="job-1", created_at=datetime(2026, 12, 6, tzinfo=UTC), heldout_members=100,
        weights_sha256="e" * 64,
    )  # fmt: skip


def test_a_card_round_trips_with_its_policy(tmp_path: Path) -> None:
    card = _card()
    write_model_card(tmp_path, card)
    read = read_model_card(tmp_path)
    assert read == card
    assert (read.policy_id, read.policy_hash, read.card_version) == ("churn-2026", "ab" * 32, 2)
    assert read.node("freshmart-north").epsilon == 0.99
    with pytest.raises(KeyError):
        read.node("nobody")


def test_a_bad_card_names_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="no model card"):
        read_model_card(tmp_path)
    raw = json.loads(_card().model_dump_json())
    (tmp_path / "model_card.json").write_text(json.dumps({**raw, "card_version": 1}))
    with pytest.raises(ModelCardError, match="card_version 1 is not supported"):
        read_model_card(tmp_path)
    (tmp_path / "model_card.json").write_text(json.dumps({**raw, "rounds": "many"}))
    with pytest.raises(ModelCardError, match=r"model_card.json: rounds"):
        read_model_card(tmp_path)
    (tmp_path / "model_card.json").write_text("{not json")
    with pytest.raises(ModelCardError, match="not JSON"):
        read_model_card(tmp_path)


def test_fairness_alarms_name_each_alarming_attribute_with_numbers_only() -> None:
    from audit import EventType
    from audit.lineage_event import LineageEvent
    from protocol.model_card import fairness_alarms

    gap = {
        "auc_by_group": {"25-34": 0.8, "65+": 0.6},
        "positive_rate_by_group": {"25-34": 0.2, "65+": 0.1},
        "too_small_to_report": ["19-24"],
        "auc_gap": 0.2,
        "positive_rate_gap": 0.1,
        "warning": True,
    }
    quiet = {**gap, "warning": False, "gap_within_noise": True}
    card = {"metrics": {"fairness_gaps": {"age_band": gap, "income_band": quiet}}}
    (details,) = fairness_alarms(card)
    assert details == {
        "attribute": "age_band",
        "auc_gap": 0.2,
        "positive_rate_gap": 0.1,
        "groups_reported": 2,
        "groups_too_small": 1,
    }
    # It is a valid audit event's details (no group label, no member identifier).
    event = LineageEvent(
        event_type=EventType.MODEL_FAIRNESS_ALARM, time="2026-01-01T00:00:00Z", actor="coordinator",
        role="coordinator", job_id="job-1", details=details,
    )  # fmt: skip
    assert event.details["attribute"] == "age_band"
    assert fairness_alarms({"metrics": {"fairness_gaps": {"not_reported": "no groups"}}}) == []


def test_a_gap_the_card_cannot_measure_is_none_with_its_reason() -> None:
    import numpy as np

    from models.group_fairness import group_fairness
    from models.score_histogram_metrics import ScoreHistogramTotal
    from protocol.model_card import CardFairnessGap, fairness_alarms

    # Every score in one fine bin: nobody is predicted positive at the base-rate cut, and no group
    # holds 10 positives: the gaps are None on the card with the reasons, never 0.
    y = np.array([1.0] * 5 + [0.0] * 115)
    band = np.array(["a", "b"] * 60, dtype=object)
    p = np.full(len(y), 0.3)
    groups = {g: ScoreHistogramTotal.of(y[band == g], p[band == g]) for g in ("a", "b")}
    gap = CardFairnessGap(
        **group_fairness(ScoreHistogramTotal.of(y, p), groups, attribute="age_band").to_dict()
    )  # type: ignore[arg-type]
    assert gap.auc_gap is None and gap.positive_rate_gap is None and len(gap.not_computable) == 2
    assert CardFairnessGap.model_validate_json(gap.model_dump_json()) == gap
    card = {"metrics": {"fairness_gaps": {"age_band": {**gap.model_dump(), "warning": True}}}}
    (details,) = fairness_alarms(card)
    assert details["auc_gap"] == details["positive_rate_gap"] == "not_computable"
    from audit import EventType
    from audit.lineage_event import LineageEvent

    event = LineageEvent(
        event_type=EventType.MODEL_FAIRNESS_ALARM, time="2026-01-01T00:00:00Z", actor="coordinator",
        role="coordinator", job_id="job-1", details=details,
    )  # fmt: skip
    assert event.details["auc_gap"] == "not_computable"
