"""The demo's reference-models stage on the Complete Journey federation: artefacts, report, lineage."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from loyalfed.demo.pipeline import DemoContext
from loyalfed.demo.report import Report
from loyalfed.demo.stages.reference_models import ReferenceModels


def test_reference_stage_writes_metrics_plots_and_lineage(cj_federation: Path, tmp_path: Path) -> None:
    (tmp_path / "federation").symlink_to(cj_federation, target_is_directory=True)
    ctx = DemoContext(out_dir=tmp_path, seed=7, console=Console(quiet=True), report=Report("test"))
    ReferenceModels().run(ctx)
    metrics = ctx.artefacts["reference_metrics"]
    assert set(metrics) == {"churn", "propensity"}
    for task in metrics.values():
        assert task["model"] == "logreg" and task["auc"] == task["by_model"]["logreg"]["auc"]
        assert set(task["by_model"]) == {"logreg", "mlp"}
        assert all(0.65 < m["auc"] < 0.9 for m in task["by_model"].values())  # honest, well above chance
    for name in ("reference_roc_churn.png", "reference_calibration_propensity.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = ctx.report.to_markdown()
    assert "yardstick" in markdown and "Held-out metrics of the reference models" in markdown
    assert [e["event_type"] for e in ctx.lineage] == ["job.finished", "job.finished"]
    assert not any("FM-" in str(e) for e in ctx.lineage)  # no member identifier in lineage
