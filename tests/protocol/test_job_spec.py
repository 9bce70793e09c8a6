"""One job spec: what the coordinator writes is exactly what a node reads, and bad specs name the field."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from flwr.app import ConfigRecord, RecordDict

from models.feature_standardisation import Standardisation
from models.task import ModelKind, Task, task_defaults
from policies.purpose import purpose_of_training_task
from protocol import JobSpec, JobSpecError, SignedDecisionRecord, job_config_record, parse_job_spec, spec_of
from protocol.task_tuning import TASK_TUNING


def _on_the_wire(spec: JobSpec) -> JobSpec:
    return spec_of(RecordDict({"config": job_config_record(spec)}))


def test_the_node_reads_what_the_coordinator_sends() -> None:
    decision = SignedDecisionRecord(statement='{"v":1}', signature="c2ln")
    spec = JobSpec(
        task="propensity", epsilon=1.0, rounds=3, as_of=date(2017, 6, 1), horizon_days=120,
        policy_id="churn-2026", policy_version=2, policy_hash="ab" * 32, signed_decisions=(decision,),
    )  # fmt: skip
    received = _on_the_wire(spec)
    assert received == spec
    assert (received.task, received.purpose, received.total_steps) == (
        Task.PROPENSITY, purpose_of_training_task("propensity"), 3 * spec.local_steps,
    )  # fmt: skip
    assert received.as_of == datetime(2017, 6, 1) and received.horizon_days == 120


def test_the_task_window_defaults_to_the_tasks_own() -> None:
    as_of, horizon = task_defaults(Task.CHURN)
    assert (JobSpec().as_of, JobSpec().horizon_days) == (as_of, horizon)
    assert JobSpec.from_run_config({"as-of": "", "horizon-days": 0}).as_of == as_of


def test_a_node_refuses_unknown_fields_and_a_purpose_from_the_wire() -> None:
    wire = JobSpec().model_dump(mode="json")
    with pytest.raises(JobSpecError, match="surprise"):
        parse_job_spec({**wire, "surprise": 1})
    with pytest.raises(JobSpecError, match="purpose"):
        parse_job_spec({**wire, "purpose": "analytics.propensity_model"})
    with pytest.raises(JobSpecError, match="expected a JSON string"):
        spec_of(RecordDict({"config": ConfigRecord({"job-spec": 3})}))
    with pytest.raises(JobSpecError, match="no 'job-spec'"):
        spec_of(RecordDict({"config": ConfigRecord({"job-id": "x"})}))
    with pytest.raises(JobSpecError, match="spec_version"):
        JobSpec.from_wire(JobSpec().model_copy(update={"spec_version": 1}).model_dump_json())


def test_an_invalid_spec_names_the_field() -> None:
    with pytest.raises(JobSpecError, match="epsilon"):
        parse_job_spec({"epsilon": -1})
    with pytest.raises(JobSpecError, match="fedprox needs proximal_mu"):
        parse_job_spec({"strategy": "fedprox"})
    with pytest.raises(JobSpecError, match="secure aggregation needs min_nodes >= 2"):
        parse_job_spec({"secure_agg": True, "min_nodes": 1})
    with pytest.raises(JobSpecError, match="signed decisions need the policy_hash"):
        parse_job_spec({"signed_decisions": [{"statement": "{}", "signature": "x"}]})
    with pytest.raises(JobSpecError, match="job_id"):
        JobSpec.from_wire('{"job_id": ""}')


def test_run_config_takes_the_whole_spec_or_its_fields() -> None:
    spec = JobSpec(job_id="run-1", epsilon=2.0)
    run_config = {"job-spec": spec.to_wire(), "expected-nodes": 3, "out-dir": "x"}
    assert JobSpec.from_run_config(run_config) == spec
    loose = JobSpec.from_run_config({"job-id": "run-1", "epsilon": 2.0, "out-dir": "x", "ledger-url": ""})
    assert (loose.job_id, loose.epsilon) == ("run-1", 2.0)


def test_the_pooled_standardisation_reaches_the_node_exactly() -> None:
    spec = JobSpec(task="churn")
    n = spec.schema.n_features
    mean = tuple(0.1 + i / 97 for i in range(n))
    scale = tuple(0.3 + i / 89 for i in range(n))
    fixed = spec.with_standardisation(Standardisation(mean=mean, scale=scale))
    assert (fixed.job_id, fixed.learning_rate) == (spec.job_id, spec.learning_rate)
    assert _on_the_wire(fixed).standardisation == Standardisation(mean=mean, scale=scale)  # exact
    assert _on_the_wire(spec).standardisation is None
    with pytest.raises(JobSpecError, match="differ in length"):
        parse_job_spec({**fixed.model_dump(), "feature_scale": (1.0, 2.0)})
    with pytest.raises(JobSpecError, match="feature_mean"):
        parse_job_spec({**fixed.model_dump(), "feature_mean": ("a", "b")})


def test_tuning_defaults_follow_the_task_and_the_scaling() -> None:
    standardised, public = JobSpec(task="propensity"), JobSpec(task="propensity", standardise=False)
    assert standardised.learning_rate == TASK_TUNING[Task.PROPENSITY, ModelKind.LOGREG, True].learning_rate
    assert public.learning_rate == TASK_TUNING[Task.PROPENSITY, ModelKind.LOGREG, False].learning_rate
    mlp = JobSpec(task="propensity", model="mlp")
    assert mlp.learning_rate == TASK_TUNING[Task.PROPENSITY, ModelKind.MLP, True].learning_rate == 4.0
    assert JobSpec(task="churn", learning_rate=0.7).learning_rate == 0.7


def test_every_training_task_has_one_consent_purpose() -> None:
    for task in Task:
        assert _on_the_wire(JobSpec(task=task)).purpose is purpose_of_training_task(task)
    with pytest.raises(ValueError, match="unknown training task 'loyalty'"):
        purpose_of_training_task("loyalty")
