"""`loyalfed demo` end to end through the installed entry point: every stage on Flower's deployment
engine (a coordinator and one node per store group as processes on loopback, all stopped at the
end), the report, model cards that came from the coordinator's registry, a log that verifies, and
lineage that ties each model to its signed policy."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# The demo starts a whole federation (a coordinator, four nodes, their SuperLink and SuperNodes): on
# a shared, busy machine it runs many times slower than on a quiet one. The bound catches a hang,
# not slowness; the demo's speed is measured by timing ``loyalfed demo`` itself.
_DEMO_TIMEOUT_S = 1500
# The slow mark: ~375 CPU seconds for the whole process tree (the suite ran it in ~0.9 s of wall
# per CPU second when it cost 461), so about 360 s on the suite's 2 cores.
pytestmark = [pytest.mark.slow(seconds=360), pytest.mark.timeout(_DEMO_TIMEOUT_S + 100)]


def _loyalfed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("loyalfed")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=_DEMO_TIMEOUT_S)


def test_demo_runs_every_stage_and_leaves_a_verifiable_lineage(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    demo = _loyalfed("demo", "--out", str(out), "--json", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Traceback" not in demo.stderr
    summary = json.loads(demo.stdout)
    assert summary["engine"] == "deployment"
    # Every stage's wall and CPU seconds, in the order they ran (their values are not asserted).
    stages = list(summary["stage_seconds"])
    assert stages[0] == "build_federation" and "federated_training" in stages
    assert list(summary["stage_cpu_seconds"]) == stages and summary["wall_seconds"] > 0
    jobs = {job["task"]: job for job in summary["jobs"]}
    assert sorted(jobs) == ["churn", "propensity"] and all(j["state"] == "finished" for j in jobs.values())
    # The card tells the truth: its AUC (held-out histograms summed under SecAgg+) is within 0.01 of
    # the exact AUC on the same held-out members, which only the demo, holding every file, computes.
    for job in jobs.values():
        assert abs(job["card_auc"] - job["exact_heldout_auc"]) <= 0.01, job
    # Every process the demo started (coordinator, SuperLink, nodes, SuperNodes) is gone.
    assert not _processes_mentioning(out)

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
    _assert_cards_came_from_the_registry(out, cards, jobs)

    db = out / "audit.sqlite"
    pinned = (out / "audit_public_key.txt").read_text().strip()  # the key the demo publishes
    verify = _loyalfed("audit", "verify", "--db", str(db), "--public-key", pinned, "--json", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    anomalies = _loyalfed("audit", "report", "--db", str(db), "--json", cwd=tmp_path)
    assert anomalies.returncode == 0, anomalies.stderr
    flagged = json.dumps(json.loads(anomalies.stdout)["anomalies"])
    # The federated jobs carry their approved policy's hash; the centralized reference (pooled
    # data, no policy) is what an auditor should see flagged.
    assert all(job["job_id"] not in flagged for job in jobs.values())
    assert "reference-centralized-churn" in flagged


def _processes_mentioning(folder: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if str(folder) in text:
            found.append(text)
    return found


def _assert_cards_came_from_the_registry(
    out: Path, cards: dict[str, dict[str, object]], jobs: dict[str, dict[str, str]]
) -> None:
    """Each card on disk is the coordinator registry's card of that job; the weights its artefact."""
    with sqlite3.connect(out / "platform" / "coordinator" / "coordinator.sqlite") as db:
        rows = {
            model_id: (job_id, json.loads(card), sha)
            for model_id, job_id, card, sha in db.execute(
                "SELECT id, job_id, card, artefact_sha256 FROM models"
            )
        }
    for task, job in jobs.items():
        job_id, registry_card, artefact_sha256 = rows[job["model_id"]]
        weights = (out / "models" / task / "model.pt").read_bytes()
        assert job_id == job["job_id"] == cards[task]["job_id"] == registry_card["job_id"]
        assert hashlib.sha256(weights).hexdigest() == artefact_sha256 == cards[task]["weights_sha256"]
        assert cards[task]["nodes"] == registry_card["nodes"]
