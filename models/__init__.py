"""models: features, labels, torch models and metrics for loyalty churn and campaign propensity.

A pure library (DESIGN.md): it imports no other loyalfed package, so a participant node and the
coordinator can both use it. Typical use at a node::

    schema = default_feature_schema()
    as_of, horizon = task_defaults(Task.CHURN)
    data = build_task_dataset(members, transactions, campaigns, task=Task.CHURN,
                              as_of=as_of, horizon_days=horizon, schema=schema)
    held_out = heldout_mask(data.member_ids)
    model = make_model(ModelKind.LOGREG, schema.n_features)
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models import metrics, plots
    from models.centralized_training import train_centralized
    from models.dp_gbdt import GbdtParams, SplitRule, train_dp_gbdt
    from models.errors import ModelError
    from models.feature_schema import FeatureSchema, FeatureSpec, Transform, default_feature_schema
    from models.features import build_features
    from models.labels import churn_labels, propensity_labels
    from models.metrics import ScoreHistogram, auc_from_histograms
    from models.networks import make_model, predict_proba
    from models.task import ModelKind, Task, task_defaults
    from models.task_dataset import TaskDataset, build_task_dataset, heldout_mask

# PEP 562 lazy exports: importing one light module (say models.feature_schema for a CLI command)
# must not pay for torch and matplotlib, which only the training and plotting paths need.
_EXPORTS = {
    "metrics": "models.metrics",
    "plots": "models.plots",
    "train_centralized": "models.centralized_training",
    "GbdtParams": "models.dp_gbdt",
    "SplitRule": "models.dp_gbdt",
    "train_dp_gbdt": "models.dp_gbdt",
    "ModelError": "models.errors",
    "FeatureSchema": "models.feature_schema",
    "FeatureSpec": "models.feature_schema",
    "Transform": "models.feature_schema",
    "default_feature_schema": "models.feature_schema",
    "build_features": "models.features",
    "churn_labels": "models.labels",
    "propensity_labels": "models.labels",
    "ScoreHistogram": "models.metrics",
    "auc_from_histograms": "models.metrics",
    "make_model": "models.networks",
    "predict_proba": "models.networks",
    "ModelKind": "models.task",
    "Task": "models.task",
    "task_defaults": "models.task",
    "TaskDataset": "models.task_dataset",
    "build_task_dataset": "models.task_dataset",
    "heldout_mask": "models.task_dataset",
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    module = import_module(module_name)
    value = module if module_name == f"models.{name}" else getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "FeatureSchema",
    "FeatureSpec",
    "GbdtParams",
    "ModelError",
    "ModelKind",
    "ScoreHistogram",
    "SplitRule",
    "Task",
    "TaskDataset",
    "Transform",
    "auc_from_histograms",
    "build_features",
    "build_task_dataset",
    "churn_labels",
    "default_feature_schema",
    "heldout_mask",
    "make_model",
    "metrics",
    "plots",
    "predict_proba",
    "propensity_labels",
    "task_defaults",
    "train_centralized",
    "train_dp_gbdt",
]
