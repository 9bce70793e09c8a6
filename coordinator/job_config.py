"""A federated training job's configuration, parsed once at the edge into a frozen model.

The same object is built from the CLI's options or from Flower's ``run_config`` (deployment
engine), and turned into the flat key/value ``ConfigRecord`` every node receives. The wire keys are
the ``JobKey`` enum; the node parses them with its own validator (the two packages never import
each other), and a test checks that what one writes the other accepts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coordinator.job_errors import JobConfigError
from models.feature_schema import FeatureSchema, default_feature_schema
from models.feature_standardisation import Standardisation, optional_standardisation
from models.task import ModelKind, Task
from policies.purpose import Purpose, purpose_of_training_task

__all__ = [
    "TASK_TUNING",
    "JobConfig",
    "JobKey",
    "ModelKind",
    "StrategyName",
    "TaskName",
    "TaskTuning",
    "purpose_for_task",
]


# One vocabulary for tasks and networks: the job carries the models package's own enums.
TaskName = Task


class StrategyName(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"


class JobKey(StrEnum):
    """Keys of the job's ConfigRecord sent to nodes and of Flower's run_config."""

    JOB_ID = "job-id"
    TASK = "task"
    PURPOSE = "purpose"
    MODEL = "model"
    EPSILON = "epsilon"
    DELTA = "delta"
    ROUNDS = "rounds"
    LOCAL_STEPS = "local-steps"
    BATCH_SIZE = "batch-size"
    LEARNING_RATE = "learning-rate"
    MAX_GRAD_NORM = "max-grad-norm"
    AS_OF = "as-of"
    HORIZON_DAYS = "horizon-days"
    K_MIN = "k-min"
    CATEGORY_MIX = "category-mix"
    SEED = "seed"
    FEATURE_MEAN = "feature-mean"
    FEATURE_SCALE = "feature-scale"


@dataclass(frozen=True)
class TaskTuning:
    """Per-task DP-SGD defaults, tuned on Complete Journey's training members (bench/fl_utility.py).

    Chosen with an in-process simulation of the same FedAvg / Opacus maths over many noise draws,
    never on the held-out members' labels alone. A store group holds ~400 labelled churn members but
    only ~220 campaign recipients. Large Poisson batches (q = 1/2 for churn, q = 1 for propensity)
    keep the noise per step small relative to the summed gradient (Ponomareva et al., "How to DP-fy
    ML", JAIR 77, 2023, §5.4), and a tight clipping norm C = 0.3 clips nearly every member's gradient,
    which keeps the direction that ranks members (what AUC measures) while the noise, proportional
    to C, falls. On standardised features (the default) the step lr·C is 0.3 for churn and 2.4 for
    propensity; on the public scaling alone the features are poorly conditioned and need larger
    steps (lr 3 and 8, propensity with C = 1).
    """

    batch_size: int
    learning_rate: float
    max_grad_norm: float


# (task, network, standardised features?) -> defaults. The MLP's (ReLU layers of width 32, so
# gradients spread over ~1,700 weights) were checked on standardised features only: lr 4 for both
# tasks (the logistic regression's lr 1 / 8 gave 0.740 / 0.725 where lr 4 gave 0.758 / 0.733, churn
# at ε = 3 and propensity at ε = 1); on the public scaling it keeps the logistic values.
_CHURN, _PROPENSITY, _LOGREG, _MLP = TaskName.CHURN, TaskName.PROPENSITY, ModelKind.LOGREG, ModelKind.MLP
TASK_TUNING = {
    (_CHURN, _LOGREG, True): TaskTuning(batch_size=256, learning_rate=1.0, max_grad_norm=0.3),
    (_PROPENSITY, _LOGREG, True): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=0.3),
    (_CHURN, _MLP, True): TaskTuning(batch_size=256, learning_rate=4.0, max_grad_norm=0.3),
    (_PROPENSITY, _MLP, True): TaskTuning(batch_size=256, learning_rate=4.0, max_grad_norm=0.3),
    (_CHURN, _LOGREG, False): TaskTuning(batch_size=256, learning_rate=3.0, max_grad_norm=0.3),
    (_PROPENSITY, _LOGREG, False): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=1.0),
    (_CHURN, _MLP, False): TaskTuning(batch_size=256, learning_rate=3.0, max_grad_norm=0.3),
    (_PROPENSITY, _MLP, False): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=1.0),
}


def purpose_for_task(task: TaskName) -> Purpose:
    """The consent purpose a training task processes member data for."""
    return purpose_of_training_task(task.value)


class JobConfig(BaseModel):
    """Everything that defines one federated DP training job.

    ``epsilon``/``delta`` are the per-node member-level target for the whole job (every round and
    local step); each node calibrates its noise to reach it exactly with its own sample rate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(default_factory=lambda: f"job-{uuid.uuid4().hex[:12]}")
    task: TaskName = TaskName.CHURN
    model: ModelKind = ModelKind.LOGREG
    epsilon: float = Field(default=3.0, gt=0.0, le=100.0)
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    rounds: int = Field(default=8, ge=1, le=1000)
    local_steps: int = Field(default=5, ge=1, le=10_000)
    # 0 for any of the next three: the task's default (TASK_TUNING).
    batch_size: int = Field(default=0, ge=0)
    learning_rate: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=0.0, ge=0.0)
    strategy: StrategyName = StrategyName.FEDAVG
    proximal_mu: float = Field(default=0.0, ge=0.0)
    server_momentum: float = Field(default=0.5, ge=0.0, lt=1.0)
    average_last: int = Field(default=4, ge=1)
    min_nodes: int = Field(default=2, ge=1)
    round_timeout_s: float = Field(default=300.0, gt=0.0)
    eval_every: int = Field(default=0, ge=0)
    patience: int = Field(default=0, ge=0)
    as_of: date | None = None
    horizon_days: int | None = Field(default=None, ge=1)
    k_min: int = Field(default=20, ge=1)
    category_mix: bool = False  # models.default_feature_schema: off unless the job asks for it
    # Pool the nodes' feature moments (k-member aggregates) into one standardisation before round 1
    # (models.feature_standardisation); the coordinator fills feature_mean/feature_scale.
    standardise: bool = True
    feature_mean: tuple[float, ...] | None = None
    feature_scale: tuple[float, ...] | None = None
    secure_agg: bool = False
    seed: int = 7

    @model_validator(mode="before")
    @classmethod
    def _task_tuning(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        try:
            task = TaskName(data.get("task", TaskName.CHURN))
            model = ModelKind(data.get("model", ModelKind.LOGREG))
        except ValueError:
            return data  # an unknown task or network: the field validation names it
        tuning = TASK_TUNING[task, model, bool(data.get("standardise", True))]
        defaults = {name: getattr(tuning, name) for name in ("batch_size", "learning_rate", "max_grad_norm")}
        return {**data, **{name: value for name, value in defaults.items() if not data.get(name)}}

    @model_validator(mode="after")
    def _check(self) -> JobConfig:
        if self.strategy is StrategyName.FEDPROX and self.proximal_mu == 0.0:
            raise ValueError("strategy fedprox needs proximal_mu > 0")
        if self.patience and not self.eval_every:
            raise ValueError("early stopping (patience > 0) needs eval_every > 0")
        _ = self.standardisation  # optional_standardisation refuses a half, mis-sized or invalid one
        if self.secure_agg and self.min_nodes < 2:
            # SecAgg+ needs at least two nodes to mask against each other (coordinator.secure_server_app).
            raise ValueError("secure aggregation needs min_nodes >= 2")
        return self

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema every node builds for this job."""
        return default_feature_schema(category_mix=self.category_mix)

    @property
    def purpose(self) -> Purpose:
        return purpose_for_task(self.task)

    @property
    def standardisation(self) -> Standardisation | None:
        """The pooled standardisation every node applies, once the coordinator has set it."""
        return optional_standardisation(
            self.feature_mean, self.feature_scale, n_features=self.schema.n_features
        )

    def with_standardisation(self, standardisation: Standardisation) -> JobConfig:
        """This job with its pooled standardisation fixed (validated like any other field)."""
        return JobConfig(
            **{
                **self.model_dump(),
                "feature_mean": standardisation.mean,
                "feature_scale": standardisation.scale,
            }
        )

    def node_config(self) -> dict[str, str | int | float]:
        """The flat record every node receives with each training/evaluation message."""
        values: dict[str, str | int | float] = {
            JobKey.JOB_ID: self.job_id,
            JobKey.TASK: self.task.value,
            JobKey.PURPOSE: self.purpose.value,
            JobKey.MODEL: self.model.value,
            JobKey.EPSILON: self.epsilon,
            JobKey.DELTA: self.delta,
            JobKey.ROUNDS: self.rounds,
            JobKey.LOCAL_STEPS: self.local_steps,
            JobKey.BATCH_SIZE: self.batch_size,
            JobKey.LEARNING_RATE: self.learning_rate,
            JobKey.MAX_GRAD_NORM: self.max_grad_norm,
            JobKey.K_MIN: self.k_min,
            JobKey.CATEGORY_MIX: int(self.category_mix),
            JobKey.SEED: self.seed,
        }
        if self.as_of is not None:
            values[JobKey.AS_OF] = self.as_of.isoformat()
        if self.horizon_days is not None:
            values[JobKey.HORIZON_DAYS] = self.horizon_days
        if self.feature_mean is not None and self.feature_scale is not None:
            # Comma-separated reprs (exact round trip): SecAgg+'s legacy config carries scalars only.
            values[JobKey.FEATURE_MEAN] = ",".join(repr(v) for v in self.feature_mean)
            values[JobKey.FEATURE_SCALE] = ",".join(repr(v) for v in self.feature_scale)
        return {str(k): v for k, v in values.items()}

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> JobConfig:
        """Parse Flower's ``run_config`` (keys in kebab-case, as in pyproject's [tool.flwr.app.config])."""
        fields = {key.replace("-", "_"): value for key, value in run_config.items()}
        for optional in ("as_of", "horizon_days"):
            if fields.get(optional) in ("", 0):
                fields.pop(optional)
        for deployment_only in ("out_dir", "ledger_url", "partners", "expected_nodes", "members_may_overlap"):
            fields.pop(deployment_only, None)
        return parse_job_config(fields)


def parse_job_config(fields: Mapping[str, Any]) -> JobConfig:
    """Build a JobConfig or raise ``JobConfigError`` naming the offending field."""
    try:
        return JobConfig(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "job"
        raise JobConfigError(f"invalid job configuration: {where}: {first['msg']}") from err
