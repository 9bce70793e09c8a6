"""The job configuration the coordinator sends is exactly what a node accepts."""

from __future__ import annotations

from datetime import date

import pytest

from coordinator.job_config import JobConfig, parse_job_config
from coordinator.job_errors import JobConfigError
from participant_node.training.errors import TrainingSpecError
from participant_node.training.training_spec import parse_training_spec


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
