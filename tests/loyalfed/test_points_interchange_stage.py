"""The demo's points interchange stage on the Complete Journey federation."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from loyalfed.demo.pipeline import DemoContext
from loyalfed.demo.report import Report
from loyalfed.demo.stages.points_interchange import run_points_interchange
from participant_node.data import load_federation, load_partner


def test_stage_links_converts_and_settles(
    cj_federation: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    federation = load_federation(cj_federation)
    ctx = DemoContext(out_dir=tmp_path, seed=7, console=Console(quiet=True), report=Report("t"))
    ctx.artefacts["federation"] = federation
    ctx.artefacts["partner_data"] = {p.partner_id: load_partner(p.path) for p in federation.partners}
    summary = run_points_interchange(ctx, conversions=120)
    # The nodes shut down cleanly: no server waited on (and cancelled) a peer's kept-alive connection.
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert errors == []
    assert summary["linked"]["linked"] > 100
    assert summary["transfers"]["posted"] >= 120
    assert summary["reconciled"] and summary["retry_same_outcome"]
    assert all(summary["ledgers_ok"].values())
    assert all(n > 0 for n in summary["audit_events"].values())
    assert [e["event_type"] for e in ctx.lineage] == ["points.linked", "points.settled"]
    markdown = ctx.report.to_markdown()
    assert "Settlement statement (reconciled)" in markdown and "FM-" not in markdown
