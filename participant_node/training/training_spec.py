"""The node's reading of a job's configuration, validated before any member data is touched.

The coordinator sends a flat ConfigRecord with every training and evaluation message. The node
does not trust it: it parses it into this frozen model (unknown keys are refused), derives the
purpose from the task itself rather than believing the coordinator's, and fills the task's
default window from ``models.task_defaults``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.feature_schema import FeatureSchema, default_feature_schema
from models.feature_standardisation import Standardisation, optional_standardisation
from models.task import ModelKind, Task, task_defaults
from participant_node.training.errors import TrainingSpecError
from policies.purpose import Purpose, purpose_of_training_task

__all__ = ["TrainingSpec", "parse_training_spec"]

# Keys Flower itself adds to a strategy's config; they carry no job semantics.
_FLOWER_KEYS = ("server-round", "proximal-mu")


class TrainingSpec(BaseModel):
    """What one job asks of this node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=64)
    task: Task
    purpose: Purpose
    model: ModelKind
    epsilon: float = Field(gt=0.0)
    delta: float = Field(gt=0.0, lt=1.0)
    rounds: int = Field(ge=1)
    local_steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0.0)
    max_grad_norm: float = Field(gt=0.0)
    k_min: int = Field(ge=1)
    category_mix: bool = False
    seed: int = 7
    as_of: datetime
    horizon_days: int = Field(ge=1)
    # The job's pooled standardisation (models.feature_standardisation); absent before it is known
    # (the feature-moments query) and in jobs that train on the public scaling alone.
    feature_mean: tuple[float, ...] | None = None
    feature_scale: tuple[float, ...] | None = None

    @field_validator("feature_mean", "feature_scale", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # The coordinator sends comma-separated floats (SecAgg+'s legacy config carries scalars only).
        if isinstance(value, str):
            try:
                return tuple(float(v) for v in value.split(","))
            except ValueError as err:
                raise ValueError("expected comma-separated numbers") from err
        return value

    @model_validator(mode="after")
    def _purpose_matches_task(self) -> TrainingSpec:
        if self.purpose is not purpose_of_training_task(self.task.value):
            raise ValueError(f"purpose {self.purpose} does not match task {self.task}")
        _ = self.standardisation  # optional_standardisation refuses a half, mis-sized or invalid one
        return self

    @property
    def standardisation(self) -> Standardisation | None:
        """The affine map applied to every feature row before training and evaluation, if any."""
        return optional_standardisation(
            self.feature_mean, self.feature_scale, n_features=self.schema.n_features
        )

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema the job fixes (every node builds the same columns)."""
        return default_feature_schema(category_mix=self.category_mix)

    @property
    def total_steps(self) -> int:
        """Local DP-SGD steps the job takes at this node over all its rounds."""
        return self.rounds * self.local_steps


def parse_training_spec(config: Mapping[str, Any]) -> TrainingSpec:
    """Parse a job's ConfigRecord; raise ``TrainingSpecError`` naming the offending key."""
    fields = {k.replace("-", "_"): v for k, v in config.items() if k not in _FLOWER_KEYS}
    task = fields.get("task")
    if task in {t.value for t in Task}:
        default_as_of, default_horizon = task_defaults(task)
        fields.setdefault("as_of", default_as_of)
        fields.setdefault("horizon_days", default_horizon)
    if isinstance(fields.get("as_of"), str):
        fields["as_of"] = datetime.combine(date.fromisoformat(fields["as_of"]), datetime.min.time())
    try:
        return TrainingSpec(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        where = "-".join(str(p).replace("_", "-") for p in first["loc"]) or "config"
        raise TrainingSpecError(f"job configuration refused by the node: {where}: {first['msg']}") from err
