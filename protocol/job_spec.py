"""The job: one typed, versioned specification that the coordinator sends and every node parses.

Built from an analyst's spec file, the CLI's options or Flower's ``run_config``; it travels to the
nodes as one JSON value under ``ConfigKey.JOB_SPEC`` of each message's config record. A node does
not trust it: unknown fields are refused (``extra="forbid"``), the consent purpose is derived from
the task and never read from the wire, and the node verifies the signed decisions itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.feature_schema import FeatureSchema, default_feature_schema
from models.feature_standardisation import Standardisation, optional_standardisation
from models.task import ModelKind, Task, task_defaults
from policies.purpose import Purpose, purpose_of_training_task
from protocol.errors import JobSpecError
from protocol.task_tuning import TASK_TUNING
from protocol.wire_keys import RunConfigKey

__all__ = ["JOB_SPEC_VERSION", "JobSpec", "SignedDecisionRecord", "StrategyName", "parse_job_spec"]

JOB_SPEC_VERSION: Literal[2] = 2
_TUNED = ("batch_size", "learning_rate", "max_grad_norm")
_SCHEDULE = (*_TUNED, "local_steps")


class StrategyName(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"  # FedAvg plus the nodes' proximal term (Li et al., MLSys 2020)


class SignedDecisionRecord(BaseModel):
    """A data officer's signed decision as it travels with the job: opaque to the coordinator.

    ``statement`` is the canonical JSON the officer signed, ``signature`` the Ed25519 signature in
    base64 (``policies.signed_approval``); each node verifies it with the key it was configured with.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    statement: str = Field(min_length=2, max_length=4096)
    signature: str = Field(min_length=1, max_length=512)


class JobSpec(BaseModel):
    """Everything that defines one federated DP training job.

    ``epsilon``/``delta`` are the per-node member-level target for the whole job (every round and
    local step); each node calibrates its noise to reach it exactly with its own sample rate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec_version: Literal[2] = JOB_SPEC_VERSION
    job_id: str = Field(default_factory=lambda: f"job-{uuid.uuid4().hex[:12]}", min_length=1, max_length=64)
    task: Task = Task.CHURN
    model: ModelKind = ModelKind.LOGREG
    epsilon: float = Field(default=3.0, gt=0.0, le=100.0)
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    rounds: int = Field(default=8, ge=1, le=1000)
    local_steps: int = Field(default=5, ge=1, le=10_000)
    # 0 for any of the next three: the task's default (protocol.task_tuning.TASK_TUNING).
    batch_size: int = Field(default=0, ge=0)
    learning_rate: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=0.0, ge=0.0)
    # True when the analyst set none of the schedule (batch, lr, clip, local steps): the coordinator
    # then sets it by models.dp_schedule's rule from the nodes' rounded member counts.
    schedule_by_rule: bool = False
    strategy: StrategyName = StrategyName.FEDAVG
    proximal_mu: float = Field(default=0.0, ge=0.0)
    server_momentum: float = Field(default=0.5, ge=0.0, lt=1.0)
    average_last: int = Field(default=4, ge=1)
    min_nodes: int = Field(default=2, ge=1)
    round_timeout_s: float = Field(default=300.0, gt=0.0)
    eval_every: int = Field(default=0, ge=0)
    patience: int = Field(default=0, ge=0)
    # The labelling date and horizon; absent: the task's defaults (models.task.task_defaults).
    as_of: datetime = Field(default=None, validate_default=True)  # type: ignore[assignment]
    horizon_days: int = Field(default=0, ge=0)
    k_min: int = Field(default=20, ge=1)
    category_mix: bool = False  # models.default_feature_schema: off unless the job asks for it
    # Pool the nodes' feature moments (k-member aggregates) into one standardisation before round 1
    # (models.feature_standardisation); the coordinator fills feature_mean/feature_scale.
    standardise: bool = True
    feature_mean: tuple[float, ...] | None = None
    feature_scale: tuple[float, ...] | None = None
    secure_agg: bool = False
    # Sum the held-out score histograms under SecAgg+ even when training rounds are plain: the
    # coordinator learns only the federation's exact total, thresholded at k members, so the card's
    # AUC, ROC and calibration are the exact figures (with secure_agg this is always so).
    secure_evaluation: bool = False
    # ε of the held-out score histograms (protocol.evaluation_sum.release_epsilon); 0: the job's ε
    # when a node's histograms are seen alone, none (an exact total) under secure aggregation.
    # Held-out members never train, so it composes in parallel with the training ε.
    evaluation_epsilon: float = Field(default=0.0, ge=0.0, le=100.0)
    seed: int = 7
    # The data-use policy the job runs under, and its partners' officers' signed decisions.
    policy_id: str | None = Field(default=None, min_length=1, max_length=128)
    policy_version: int | None = Field(default=None, ge=1)
    policy_hash: str | None = Field(default=None, min_length=1, max_length=128)
    signed_decisions: tuple[SignedDecisionRecord, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_task(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        try:
            task = Task(data.get("task", Task.CHURN))
            model = ModelKind(data.get("model", ModelKind.LOGREG))
        except ValueError:
            return data  # an unknown task or network: the field validation names it
        tuning = TASK_TUNING[task, model, bool(data.get("standardise", True))]
        filled: dict[str, Any] = {name: getattr(tuning, name) for name in _TUNED if not data.get(name)}
        if "schedule_by_rule" not in data:
            filled["schedule_by_rule"] = not any(data.get(name) for name in _SCHEDULE)
        as_of, horizon = task_defaults(task)
        if data.get("as_of") in (None, ""):
            filled["as_of"] = as_of
        if not data.get("horizon_days"):
            filled["horizon_days"] = horizon
        return {**data, **filled}

    @field_validator("as_of", mode="before")
    @classmethod
    def _midnight(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 10:
            value = date.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, datetime.min.time())
        return value

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if self.strategy is StrategyName.FEDPROX and self.proximal_mu == 0.0:
            raise ValueError("strategy fedprox needs proximal_mu > 0")
        if self.patience and not self.eval_every:
            raise ValueError("early stopping (patience > 0) needs eval_every > 0")
        _ = self.standardisation  # optional_standardisation refuses a half, mis-sized or invalid one
        if self.secure_heldout_sum and self.min_nodes < 2:
            # SecAgg+ needs at least two nodes to mask against each other (coordinator.secure_server_app).
            raise ValueError("secure aggregation needs min_nodes >= 2")
        if self.signed_decisions and self.policy_hash is None:
            raise ValueError("signed decisions need the policy_hash they approve")
        return self

    @property  # shadows pydantic's deprecated BaseModel.schema(); nodes call spec.schema for features
    def schema(self) -> FeatureSchema:  # type: ignore[override]
        """The feature schema every node builds for this job."""
        return default_feature_schema(category_mix=self.category_mix)

    @property
    def purpose(self) -> Purpose:
        """The consent purpose the task processes member data for (derived, never sent)."""
        return purpose_of_training_task(self.task.value)

    @property
    def standardisation(self) -> Standardisation | None:
        """The pooled standardisation every node applies, once the coordinator has set it."""
        return optional_standardisation(
            self.feature_mean, self.feature_scale, n_features=self.schema.n_features
        )

    @property
    def secure_heldout_sum(self) -> bool:
        """Whether the held-out histograms are summed under SecAgg+ (always with secure aggregation)."""
        return self.secure_agg or self.secure_evaluation

    @property
    def total_steps(self) -> int:
        """Local DP-SGD steps the job takes at one node over all its rounds."""
        return self.rounds * self.local_steps

    @property
    def evaluations_planned(self) -> int:
        """Evaluations of the held-out members the job may run: every ``eval_every`` rounds before
        the last, and the final one (their DP releases compose at each node)."""
        return (self.rounds - 1) // self.eval_every + 1 if self.eval_every else 1

    def with_schedule(self, fields: Mapping[str, int | float]) -> JobSpec:
        """This job with its DP-SGD schedule set (``models.DpSgdSchedule.job_fields``), validated."""
        chosen = {k: v for k, v in fields.items() if k != "rounds"}  # the analyst's rounds stand
        return JobSpec(**{**self.model_dump(), **chosen, "schedule_by_rule": False})

    def with_standardisation(self, standardisation: Standardisation) -> JobSpec:
        """This job with its pooled standardisation fixed (validated like any other field)."""
        return JobSpec(
            **{
                **self.model_dump(),
                "feature_mean": standardisation.mean,
                "feature_scale": standardisation.scale,
            }
        )

    def to_wire(self) -> str:
        """The spec as the JSON value of ``ConfigKey.JOB_SPEC`` (floats round-trip exactly)."""
        return self.model_dump_json()

    @classmethod
    def from_wire(cls, text: object) -> JobSpec:
        """Parse the JSON value of ``ConfigKey.JOB_SPEC``; raise ``JobSpecError`` naming the field."""
        if not isinstance(text, str):
            raise JobSpecError(f"invalid job spec: expected a JSON string, got {type(text).__name__}")
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            raise _spec_error(err) from err

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> JobSpec:
        """Parse Flower's ``run_config``: ``job-spec`` (JSON) or the fields in kebab-case."""
        if run_config.get(RunConfigKey.JOB_SPEC):
            return cls.from_wire(run_config[RunConfigKey.JOB_SPEC])
        deployment = {str(key) for key in RunConfigKey}
        fields = {k.replace("-", "_"): v for k, v in run_config.items() if k not in deployment}
        return parse_job_spec(fields)


def _spec_error(err: ValidationError) -> JobSpecError:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "job"
    return JobSpecError(f"invalid job spec: {where}: {first['msg']}")


def parse_job_spec(fields: Mapping[str, Any]) -> JobSpec:
    """Build a JobSpec from a mapping of fields or raise ``JobSpecError`` naming the offending field."""
    try:
        return JobSpec(**fields)
    except ValidationError as err:
        raise _spec_error(err) from err
    except TypeError as err:  # a non-string key
        raise JobSpecError(f"invalid job spec: {err}") from err
