"""`TaskDataset`: features and labels of one task at one node, and the shared held-out split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from models.errors import ModelError
from models.feature_schema import FeatureSchema
from models.features import build_features
from models.frame_contract import as_timestamp
from models.labels import churn_labels, propensity_labels
from models.task import Task

__all__ = ["FAIRNESS_COLUMNS", "HELDOUT_SALT", "TaskDataset", "build_task_dataset", "heldout_mask"]

# Demographic columns of the members contract used ONLY to measure fairness gaps, never as features.
FAIRNESS_COLUMNS = ("age_band", "income_band", "gender")
HELDOUT_SALT = "loyalfed-heldout-v1"
_UNKNOWN_GROUP = "unknown"


@dataclass(frozen=True)
class TaskDataset:
    """One example per member: ``X`` (float32, n x d, in [0, 1]), ``y`` (float32 0/1), groups.

    Attributes
    ----------
    groups
        Fairness attribute -> array of group labels aligned with ``member_ids`` ("unknown" where the
        member did not give it); only attributes present in the members frame.
    """

    task: Task
    member_ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    schema_fingerprint: str
    as_of: datetime
    horizon_days: int
    groups: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.member_ids)
        if self.X.shape != (n, len(self.feature_names)) or self.y.shape != (n,):
            raise ValueError(f"inconsistent shapes: ids {n}, X {self.X.shape}, y {self.y.shape}")
        if any(len(v) != n for v in self.groups.values()):
            raise ValueError("every group array must align with member_ids")

    def __len__(self) -> int:
        return len(self.member_ids)

    @property
    def base_rate(self) -> float:
        """Share of positive labels (NaN when empty)."""
        return float(self.y.mean()) if len(self) else float("nan")

    def subset(self, mask: np.ndarray) -> TaskDataset:
        """The examples where boolean ``mask`` is True (or at integer positions ``mask``)."""
        return TaskDataset(
            task=self.task,
            member_ids=self.member_ids[mask],
            X=self.X[mask],
            y=self.y[mask],
            feature_names=self.feature_names,
            schema_fingerprint=self.schema_fingerprint,
            as_of=self.as_of,
            horizon_days=self.horizon_days,
            groups={k: v[mask] for k, v in self.groups.items()},
        )

    @classmethod
    def concatenate(cls, parts: Iterable[TaskDataset]) -> TaskDataset:
        """Pool datasets built with the same schema and task (the centralized, non-private yardstick)."""
        parts = list(parts)
        if not parts:
            raise ModelError("cannot pool zero datasets")
        first = parts[0]
        if any(p.schema_fingerprint != first.schema_fingerprint or p.task != first.task for p in parts):
            raise ModelError("cannot pool datasets built with different schemas or tasks")
        keys = set.intersection(*(set(p.groups) for p in parts))
        return cls(
            task=first.task,
            member_ids=np.concatenate([p.member_ids for p in parts]),
            X=np.concatenate([p.X for p in parts]),
            y=np.concatenate([p.y for p in parts]),
            feature_names=first.feature_names,
            schema_fingerprint=first.schema_fingerprint,
            as_of=first.as_of,
            horizon_days=first.horizon_days,
            groups={k: np.concatenate([p.groups[k] for p in parts]) for k in sorted(keys)},
        )


def heldout_mask(
    member_ids: Iterable[str] | np.ndarray, *, fraction: float = 0.2, salt: str = HELDOUT_SALT
) -> np.ndarray:
    """Deterministic held-out split: True for members whose salted SHA-256 falls below ``fraction``.

    Every model (centralized, per node, federated) calls this with the same salt, so all are
    evaluated on the SAME members without any node sharing its list. The hash is over ``member_id``,
    which is the shared identity where it matters: in the demo federation each household sits in
    exactly one FreshMart store group (under one member id, unique across the groups), so pooled and
    federated runs hold out the same households. Brand partners number their members themselves; a
    cross-brand job should hash the PSI link token instead, so a household is held out everywhere.

    Parameters
    ----------
    member_ids
        Identifiers (converted with ``str``).
    fraction
        Expected held-out share, in (0, 1).
    salt
        Changing it draws a different, equally deterministic split (e.g. a validation split).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    cut = int(fraction * 2**64)
    prefix = salt.encode("utf-8") + b"\x00"
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha256(prefix + str(m).encode("utf-8")).digest()[:8], "big") < cut
            for m in member_ids
        ),
        dtype=bool,
    )


def build_task_dataset(
    members: pd.DataFrame,
    transactions: pd.DataFrame,
    campaigns: pd.DataFrame | None,
    *,
    task: Task | str,
    as_of: datetime | date | str | pd.Timestamp,
    horizon_days: int,
    schema: FeatureSchema,
) -> TaskDataset:
    """Features at ``as_of`` and labels over the horizon for every labellable member of ``members``.

    Raises
    ------
    ModelError
        For ``propensity`` without a campaigns frame.
    """
    task = Task(task)
    if task is Task.CHURN:
        labels = churn_labels(transactions, as_of=as_of, horizon_days=horizon_days, members=members)
    else:
        if campaigns is None:
            raise ModelError("propensity needs the partner's campaigns file, which is missing")
        labels = propensity_labels(campaigns, as_of=as_of, horizon_days=horizon_days)
        labels = labels[labels.index.isin(members["member_id"].astype(str))]
    features = build_features(members, transactions, as_of=as_of, schema=schema, campaigns=campaigns)
    X = features.loc[labels.index].to_numpy(dtype=np.float32)
    return TaskDataset(
        task=task,
        member_ids=labels.index.to_numpy(dtype=object),
        X=X,
        y=labels.to_numpy(dtype=np.float32),
        feature_names=schema.names,
        schema_fingerprint=schema.fingerprint,
        as_of=as_timestamp(as_of).to_pydatetime(),
        horizon_days=horizon_days,
        groups=_groups(members, labels.index),
    )


def _groups(members: pd.DataFrame, ids: pd.Index) -> dict[str, np.ndarray]:
    indexed = members.assign(member_id=members["member_id"].astype(str)).set_index("member_id")
    out: dict[str, np.ndarray] = {}
    for column in FAIRNESS_COLUMNS:
        if column in indexed.columns:
            values = indexed[column].reindex(ids).astype(object)
            out[column] = values.where(values.notna(), _UNKNOWN_GROUP).astype(str).to_numpy(dtype=object)
    return out
