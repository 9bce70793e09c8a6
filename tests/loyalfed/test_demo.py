"""`loyalfed demo` end to end through the installed entry point: every stage, the report, a log
that verifies, and lineage that ties each model to its approved policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _loyalfed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("loyalfed")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_demo_runs_every_stage_and_leaves_a_verifiable_lineage(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    demo = _loyalfed("demo", "--out", str(out), cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Traceback" not in demo.stderr

    report = (out / "report.html").read_text(encoding="utf-8")
    for section in ("Federated DP training", "Stage timings"):
        assert section in report
    for png in ("data_per_partner.png", "member_matching.png", "federated_roc.png", "audit_lineage.png"):
        assert (out / png).stat().st_size > 1000, png

    cards = {
        t: json.loads((out / "models" / t / "model_card.json").read_text()) for t in ("churn", "propensity")
    }
    for card in cards.values():
        assert len(card["nodes"]) == 4
        assert all(0 < n["epsilon"] <= 3.0 + 1e-9 for n in card["nodes"])
        assert 0.5 < card["metrics"]["auc"] <= 1.0
    # The policy stage withdrew consent for members at every store group: the card counts them.
    assert all(n["members_excluded_by_consent"] > 0 for n in cards["churn"]["nodes"])

    db = out / "audit.sqlite"
    pinned = (out / "audit_public_key.txt").read_text().strip()  # the key the demo publishes
    verify = _loyalfed("audit", "verify", "--db", str(db), "--public-key", pinned, "--json", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    anomalies = _loyalfed("audit", "report", "--db", str(db), "--json", cwd=tmp_path)
    assert anomalies.returncode == 0, anomalies.stderr
    flagged = json.dumps(json.loads(anomalies.stdout)["anomalies"])
    # The federated jobs carry their approved policy's hash; the centralized reference (pooled
    # data, no policy) is what an auditor should see flagged.
    assert "demo-churn-dp" not in flagged and "demo-propensity-dp" not in flagged
    assert "reference-centralized-churn" in flagged
