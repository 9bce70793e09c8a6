"""The demo's first stage: builds and validates the federation, registers nodes without identifiers."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from loyalfed.demo.pipeline import DemoContext
from loyalfed.demo.report import Report
from loyalfed.demo.stages.build_federation import BuildFederation
from participant_node.data import Federation


def test_stage_builds_registers_and_reports(tmp_path: Path) -> None:
    ctx = DemoContext(out_dir=tmp_path, seed=7, console=Console(quiet=True), report=Report("test"))
    BuildFederation().run(ctx)
    federation = ctx.artefacts["federation"]
    assert isinstance(federation, Federation) and len(federation.partners) == 6
    assert set(ctx.artefacts["partner_data"]) == set(federation.partner_ids)
    events = [e for e in ctx.lineage if e["event_type"] == "node.registered"]
    assert [e["partner"] for e in events] == list(federation.partner_ids)
    assert all(len(e["inputs"][0]["fingerprint"]) == 64 for e in events)
    assert all(e["details"]["members_rows_rounded"] % 100 == 0 for e in events)
    text = json.dumps(ctx.lineage)
    members = ctx.artefacts["partner_data"]["fuelgo"].members
    assert not any(value in text for value in members["phone"].head(50))
    assert not any(value in text for value in members["member_id"].head(50))
    assert (tmp_path / "data_per_partner.png").stat().st_size > 10_000
    table = next(b for b in ctx.report.blocks if b.kind == "table")
    assert table.rows[0][:3] == ("freshmart-north", "store_group", "617")
    assert ("build_federation", "transactions (all partners)", "1,469,307") in ctx.summary
