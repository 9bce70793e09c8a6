"""Demo stage: the centralized, NON-PRIVATE reference models on the pooled FreshMart store groups.

A yardstick, not a product feature: it needs all four store groups' member data in one place, which
the federation exists to avoid. The demo computes it only because it owns every synthetic partner;
the federated DP models of the next stage are judged against it. Both use the same feature schema,
the same labels and the same held-out members (`models.heldout_mask`).

Leaves ``ctx.artefacts["reference_metrics"]``: task -> the logistic-regression reference's held-out
metrics (``auc``, ``pr_auc``, ``brier``, ``n``, ``base_rate``, ...) with ``"model": "logreg"`` and
``"by_model"``: model kind -> metrics for both networks; and ``ctx.artefacts["reference_heldout"]``:
task -> (fpr, tpr) of the logistic-regression reference, for the training stage's ROC plot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from loyalfed.demo.pipeline import DemoContext
from models import (
    ModelKind,
    Task,
    TaskDataset,
    build_task_dataset,
    default_feature_schema,
    heldout_mask,
    predict_proba,
    task_defaults,
    train_centralized,
)
from models.feature_schema import FeatureSchema
from models.metrics import CalibrationCurve, calibration_curve, fairness_gaps, roc_points
from models.plots import plot_calibration, plot_roc_curves
from participant_node.data import Federation, PartnerData, PartnerKind, load_federation, load_partner
from policies.purpose import Purpose

__all__ = ["ReferenceModels", "load_store_group_datasets", "store_group_datasets"]

_PURPOSE = {Task.CHURN: Purpose.CHURN_MODEL, Task.PROPENSITY: Purpose.PROPENSITY_MODEL}


def store_group_datasets(
    federation: Federation, partner_data: Mapping[str, PartnerData], *, schema: FeatureSchema
) -> dict[Task, TaskDataset]:
    """Pool the store-group partners' task datasets (each task at its `task_defaults` window)."""
    groups = [p.partner_id for p in federation.partners if p.kind is PartnerKind.STORE_GROUP]
    pooled = {}
    for task in Task:
        as_of, horizon = task_defaults(task)
        parts = [
            build_task_dataset(
                partner_data[pid].members,
                partner_data[pid].transactions,
                partner_data[pid].campaigns,
                task=task,
                as_of=as_of,
                horizon_days=horizon,
                schema=schema,
            )
            for pid in groups
        ]
        pooled[task] = TaskDataset.concatenate(parts)
    return pooled


def load_store_group_datasets(federation_dir: Path, *, schema: FeatureSchema) -> dict[Task, TaskDataset]:
    """Load a federation folder and pool its store groups (what `bench/baselines.py` uses)."""
    federation = load_federation(federation_dir)
    data = {
        p.partner_id: load_partner(p.path) for p in federation.partners if p.kind is PartnerKind.STORE_GROUP
    }
    return store_group_datasets(federation, data, schema=schema)


@dataclass(frozen=True)
class _Reference:
    """One trained reference: held-out metrics, ROC points and calibration curve."""

    metrics: dict[str, float]
    roc: tuple[np.ndarray, np.ndarray]
    calibration: CalibrationCurve


class ReferenceModels:
    """Train logistic regression and the MLP per task on the pooled store groups; report and plot."""

    name = "reference_models"

    def run(self, ctx: DemoContext) -> None:
        schema = default_feature_schema()
        federation = ctx.artefacts.get("federation") or load_federation(ctx.federation_dir)
        partner_data = ctx.artefacts.get("partner_data") or {
            p.partner_id: load_partner(p.path) for p in federation.partners
        }
        datasets = store_group_datasets(federation, partner_data, schema=schema)
        results: dict[Task, dict[ModelKind, _Reference]] = {}
        with Progress(console=ctx.console, transient=True) as progress:
            bar = progress.add_task("training reference models", total=len(Task) * len(ModelKind))
            for task, data in datasets.items():
                results[task] = {}
                for kind in ModelKind:
                    results[task][kind] = _train(data, kind, seed=ctx.seed)
                    progress.advance(bar)
        ctx.artefacts["reference_metrics"] = {
            t.value: {
                **by_kind[ModelKind.LOGREG].metrics,
                "model": ModelKind.LOGREG.value,
                "by_model": {k.value: ref.metrics for k, ref in by_kind.items()},
            }
            for t, by_kind in results.items()
        }
        ctx.artefacts["reference_heldout"] = {t.value: r[ModelKind.LOGREG].roc for t, r in results.items()}
        _report(ctx, datasets, results, schema)


def _train(data: TaskDataset, kind: ModelKind, *, seed: int) -> _Reference:
    model, metrics = train_centralized(data, kind=kind, seed=seed)
    test = data.subset(heldout_mask(data.member_ids))
    scores = predict_proba(model, test.X)
    calibration = calibration_curve(test.y, scores)
    metrics["ece"] = calibration.expected_calibration_error()
    gaps = fairness_gaps(test.y, scores, test.groups)
    metrics["fairness_warnings"] = float(sum(g.warning for g in gaps))
    metrics["max_auc_gap"] = max((g.auc_gap for g in gaps), default=0.0)
    metrics["max_positive_rate_gap"] = max((g.positive_rate_gap for g in gaps), default=0.0)
    return _Reference(metrics, roc_points(test.y, scores), calibration)


def _report(
    ctx: DemoContext,
    datasets: Mapping[Task, TaskDataset],
    results: Mapping[Task, Mapping[ModelKind, _Reference]],
    schema: FeatureSchema,
) -> None:
    ctx.report.add_heading("Reference models (centralized, non-private yardstick)")
    ctx.report.add_text(
        "A yardstick, not something the product does: these models pool the four FreshMart store "
        "groups' member data in one place, which is exactly what the federation avoids. The demo "
        "computes them only because it owns every synthetic partner. Same feature schema "
        f"({schema.n_features} features scaled by public bounds, fingerprint {schema.fingerprint[:12]}), "
        "same labels and the same 20 % held-out members as the federated models; the number of "
        "epochs is chosen on a validation split of the training members, never on the held-out ones."
    )
    rows = []
    for task, by_kind in results.items():
        as_of, horizon = task_defaults(task)
        data = datasets[task]
        for kind, ref in by_kind.items():
            m = ref.metrics
            rows.append(
                [
                    task.value,
                    kind.value,
                    f"{as_of:%Y-%m-%d} + {horizon} d",
                    f"{len(data):,}",
                    f"{int(m['n']):,}",
                    f"{m['base_rate']:.1%}",
                    *(f"{m[name]:.3f}" for name in ("auc", "pr_auc", "brier", "ece")),
                ]
            )
        aucs = " / ".join(f"{by_kind[k].metrics['auc']:.3f}" for k in ModelKind)
        ctx.add_summary("reference_models", f"{task.value} held-out AUC (logreg / mlp), pooled", aucs)
        _figures(ctx, task, by_kind)
        _record(ctx, task, data, by_kind)
    header = ["task", "model", "as-of + horizon", "members", "held out", "held-out positives", "ROC-AUC"]
    header += ["PR-AUC", "Brier", "ECE"]
    ctx.report.add_table("Held-out metrics of the reference models", header, rows)
    _fairness_text(ctx, results)


def _figures(ctx: DemoContext, task: Task, by_kind: Mapping[ModelKind, _Reference]) -> None:
    roc_png, calibration_png = f"reference_roc_{task.value}.png", f"reference_calibration_{task.value}.png"
    plot_roc_curves(
        {f"centralized {k.value}": ref.roc for k, ref in by_kind.items()},
        ctx.out_dir / roc_png,
        title=f"{task.value}: centralized non-private reference (held-out)",
        aucs={f"centralized {k.value}": ref.metrics["auc"] for k, ref in by_kind.items()},
    )
    plot_calibration(
        {f"centralized {k.value}": ref.calibration for k, ref in by_kind.items()},
        ctx.out_dir / calibration_png,
        title=f"{task.value}: calibration of the reference (held-out)",
    )
    ctx.report.add_figure(f"ROC curves, {task.value} reference", roc_png)
    ctx.report.add_figure(f"Calibration, {task.value} reference", calibration_png)


def _fairness_text(ctx: DemoContext, results: Mapping[Task, Mapping[ModelKind, _Reference]]) -> None:
    parts = []
    for task, by_kind in results.items():
        m = by_kind[ModelKind.LOGREG].metrics
        flag = "WARNING: a gap exceeds 15 points" if m["fairness_warnings"] else "no gap above 15 points"
        parts.append(
            f"{task.value}: largest AUC gap {m['max_auc_gap']:.3f}, largest positive-rate gap "
            f"{m['max_positive_rate_gap']:.3f} ({flag})"
        )
    ctx.report.add_text(
        "Fairness of the logistic-regression reference between age bands and between income bands "
        "(held-out members who stated them; groups under 20 members left out): " + "; ".join(parts) + "."
    )


def _record(ctx: DemoContext, task: Task, data: TaskDataset, by_kind: Mapping[ModelKind, _Reference]) -> None:
    ctx.record_lineage(
        "job.finished",
        actor="demo",
        role="analyst",
        purpose=_PURPOSE[task].value,
        job_id=f"reference-centralized-{task.value}",
        details={
            "kind": "centralized_nonprivate_reference",
            "members": len(data),
            **{f"{k.value}_auc": round(ref.metrics["auc"], 4) for k, ref in by_kind.items()},
        },
    )
