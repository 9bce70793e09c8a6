"""The demo's PolicyApprovals stage on the Complete Journey federation: approvals, refusal, withdrawals."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from audit import LineageEvent
from coordinator.approvals import PolicyRegistry, require_approved
from loyalfed.demo.pipeline import DemoContext
from loyalfed.demo.report import Report
from loyalfed.demo.stages.approvals import PolicyApprovals
from participant_node.consent import ConsentStore
from participant_node.data import load_federation, load_partner


def test_policy_approvals_stage(cj_federation: Path, tmp_path: Path) -> None:
    shutil.copytree(cj_federation, tmp_path / "federation")
    ctx = DemoContext(out_dir=tmp_path, seed=7, console=Console(quiet=True), report=Report("t"))
    # As in the pipeline, BuildFederation has already loaded and validated every partner.
    federation = load_federation(tmp_path / "federation")
    ctx.artefacts["federation"] = federation
    stores = [p for p in federation.partners if p.partner_id.startswith("freshmart-")]
    ctx.artefacts["partner_data"] = {p.partner_id: load_partner(p.path) for p in stores}
    PolicyApprovals().run(ctx)
    policy = ctx.artefacts["policy"]
    assert policy["purpose"] == "analytics.churn_model" and policy["version"] == 1
    registry = PolicyRegistry.at_path(Path(policy["registry"]))
    approved = require_approved(registry, policy["ref"], partners=policy["partners"])
    registry.close()
    assert approved.content_hash == policy["content_hash"] and len(approved.approvals) == 4
    kinds = [e["event_type"] for e in ctx.lineage]
    assert kinds.count("policy.drafted") == 3
    assert kinds.count("policy.approved") == 4 + 4 + 5
    assert kinds.count("policy.rejected") == 1 and kinds.count("job.refused") == 1
    assert kinds.count("consent.withdrawn") == 4
    refused = next(e for e in ctx.lineage if e["event_type"] == "job.refused")
    assert "details" in refused and refused["details"] == {"partners_not_approved": 1}
    store = ConsentStore.at_partner(tmp_path / "federation" / "freshmart-north")
    assert len(store.withdrawals()) == 3 * 2
    store.close()
    assert any(row[0] == "policy_approvals" for row in ctx.summary)
    for record in ctx.lineage:  # every event is one the audit log accepts (no identifiers, valid fields)
        LineageEvent.from_record(record, now=datetime.now(UTC), actor="loyalfed-demo")
