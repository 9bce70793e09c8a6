"""The demo's audit stages: every lineage record lands in the log, which verifies at the end."""

from __future__ import annotations

import io
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console

from audit.log_verification import verify_log
from audit.tree_head import load_or_create_signing_key
from loyalfed.demo.pipeline import DemoContext, run_demo
from loyalfed.demo.stages.audit_log import LINEAGE_FIGURE, OPENLINEAGE_FILE, OpenAuditLog, VerifyAuditLog

POLICY, SNAPSHOT = "a1" * 32, "c0" * 32


class RegisterNodes:
    """Records what BuildFederation records (before the log is open: the sink replays it)."""

    name = "register"

    def run(self, ctx: DemoContext) -> None:
        for partner in ("freshmart-north", "careplus"):
            ctx.record_lineage(
                "node.registered",
                actor=partner,
                role="partner organisation",
                partner=partner,
                inputs=[{"partner": partner, "fingerprint": "12" * 32}],
                details={"kind": "store_group", "members_rows_rounded": 2500},
            )


class TrainOneModel:
    name = "train"

    def run(self, ctx: DemoContext) -> None:
        common = {"purpose": "analytics.churn_model", "policy_hash": POLICY}
        ctx.record_lineage("policy.drafted", actor="analyst", role="analyst", partners=["careplus"], **common)
        ctx.record_lineage(
            "policy.approved", actor="dpo-careplus", role="data_officer", partner="careplus", **common
        )
        job = {"job_id": "job-7", "consent_snapshot_hash": SNAPSHOT, **common}
        inputs = [{"partner": "careplus", "fingerprint": "34" * 32}]
        ctx.record_lineage("job.started", actor="coordinator", role="coordinator", inputs=inputs, **job)
        ctx.record_lineage(
            "budget.charged", actor="careplus", role="node", partner="careplus", epsilon=0.9, **job
        )
        ctx.record_lineage("job.finished", actor="coordinator", role="coordinator", **job)
        ctx.record_lineage(
            "model.published",
            actor="coordinator",
            role="coordinator",
            model_id="churn-7",
            outputs=[{"name": "weights.pt", "sha256": "56" * 32}],
            **job,
        )
        # A buggy stage trying to log an identifier: refused, counted, never stored.
        ctx.record_lineage(
            "psi.run", actor="coordinator", role="coordinator", details={"first_match": "FM-0004711"}
        )


def test_demo_stages_log_verify_and_draw(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=120)
    stages = [RegisterNodes(), OpenAuditLog(), TrainOneModel(), VerifyAuditLog()]
    result = run_demo(stages, out_dir=tmp_path, seed=3, console=console)
    report = verify_log(tmp_path / "audit.sqlite", public_key=_key(tmp_path))
    assert report.ok and report.tree_size == 8  # 2 replayed + 6 accepted; 1 refused
    markdown = result.report_markdown.read_text()
    assert "whole-log verification | passed" in markdown.replace("  ", " ")
    assert "events refused (identifier-shaped or invalid) | 1" in markdown.replace("  ", " ")
    assert "FM-0004711" not in (tmp_path / "audit.sqlite").read_bytes().decode("latin-1")
    assert (tmp_path / LINEAGE_FIGURE).stat().st_size > 10_000
    assert len((tmp_path / OPENLINEAGE_FILE).read_text().splitlines()) == 8
    assert {"audit_log.open", "audit_log.verify"} <= set(result.stage_seconds)  # timed in the report

    # A second run into the same folder extends the same append-only log and proves consistency.
    result = run_demo(stages, out_dir=tmp_path, seed=3, console=console)
    assert verify_log(tmp_path / "audit.sqlite", public_key=_key(tmp_path)).tree_size == 16
    assert "consistency 8 → 16 | verified" in result.report_markdown.read_text().replace("  ", " ")


def _key(folder: Path) -> Ed25519PublicKey:
    """The demo's log key, as its operator would pin it."""
    return load_or_create_signing_key(folder / "audit.key").public_key()
