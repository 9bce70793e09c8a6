"""The job configuration the coordinator sends is exactly what a node accepts."""

from __future__ import annotations

from datetime import date

import pytest

from coordinator.job_config import TASK_TUNING, JobConfig, ModelKind, TaskName, parse_job_config
from coordinator.job_errors import JobConfigError
from models.feature_standardisation import Standardisation
from participant_node.training.errors import TrainingSpecError
from participant_node.training.training_spec import parse_training_spec
from policies.purpose import purpose_of_training_task


def test_node_parses_the_coordinators_record() -> None:
    job = JobConfig(task="propensity", epsilon=1.0, rounds=3, as_of=date(2017, 6, 1), horizon_days=120)
    spec = parse_training_spec({**job.node_config(), "server-round": 2, "proximal-mu": 0.1})
    assert (spec.task, spec.purpose, spec.epsilon, spec.total_steps) == (
        "propensity",
        "analytics.propensity_model",
        1.0,
        3 * job.local_steps,
    )
    assert spec.as_of.date() == date(2017, 6, 1) and spec.horizon_days == 120


def test_node_refuses_unknown_keys_and_a_purpose_that_does_not_match_the_task() -> None:
    record = JobConfig().node_config()
    with pytest.raises(TrainingSpecError, match="surprise"):
        parse_training_spec({**record, "surprise": 1})
    with pytest.raises(TrainingSpecError, match="does not match task"):
        parse_training_spec({**record, "purpose": "analytics.propensity_model"})


def test_invalid_job_names_the_field() -> None:
    with pytest.raises(JobConfigError, match="epsilon"):
        parse_job_config({"epsilon": -1})
    with pytest.raises(JobConfigError, match="fedprox needs proximal_mu"):
        parse_job_config({"strategy": "fedprox"})
    assert (
        JobConfig.from_run_config({"task": "churn", "epsilon": 2.0, "as-of": "", "out-dir": "x"}).epsilon
        == 2.0
    )


def test_secure_aggregation_needs_two_nodes_to_mask_against() -> None:
    assert parse_job_config({"secure_agg": True}).secure_agg
    with pytest.raises(JobConfigError, match="secure aggregation needs min_nodes >= 2"):
        parse_job_config({"secure_agg": True, "min_nodes": 1})


def test_the_pooled_standardisation_reaches_the_node_exactly() -> None:
    job = JobConfig(task="churn")
    n = job.schema.n_features
    mean = tuple(0.1 + i / 97 for i in range(n))
    scale = tuple(0.3 + i / 89 for i in range(n))
    fixed = job.with_standardisation(Standardisation(mean=mean, scale=scale))
    assert (fixed.job_id, fixed.learning_rate) == (job.job_id, job.learning_rate)
    spec = parse_training_spec(fixed.node_config())
    assert spec.standardisation == Standardisation(mean=mean, scale=scale)  # repr round trip: exact
    assert parse_training_spec(job.node_config()).standardisation is None
    with pytest.raises(TrainingSpecError, match="differ in length"):
        parse_training_spec({**fixed.node_config(), "feature-scale": "1.0,2.0"})
    with pytest.raises(TrainingSpecError, match="feature-mean"):
        parse_training_spec({**fixed.node_config(), "feature-mean": "a,b"})


def test_tuning_defaults_follow_the_task_and_the_scaling() -> None:
    standardised, public = JobConfig(task="propensity"), JobConfig(task="propensity", standardise=False)
    assert (
        standardised.learning_rate == TASK_TUNING[TaskName.PROPENSITY, ModelKind.LOGREG, True].learning_rate
    )
    assert public.learning_rate == TASK_TUNING[TaskName.PROPENSITY, ModelKind.LOGREG, False].learning_rate
    mlp = JobConfig(task="propensity", model="mlp")
    assert mlp.learning_rate == TASK_TUNING[TaskName.PROPENSITY, ModelKind.MLP, True].learning_rate == 4.0
    assert JobConfig(task="churn", learning_rate=0.7).learning_rate == 0.7


def test_both_sides_name_the_feature_moments_query_alike() -> None:
    from coordinator import server_app
    from participant_node.training import client_app

    assert server_app.FEATURE_MOMENTS_ACTION == client_app.FEATURE_MOMENTS_ACTION
    assert server_app.MOMENTS_RECORD == client_app.MOMENTS_RECORD


def test_every_training_task_has_one_consent_purpose_on_both_sides() -> None:
    for task in TaskName:
        job = JobConfig(task=task)
        assert parse_training_spec(job.node_config()).purpose is job.purpose is purpose_of_training_task(task)
    with pytest.raises(ValueError, match="unknown training task 'loyalty'"):
        purpose_of_training_task("loyalty")
