"""Auditor tools: lineage graph of a model, anomaly signals, and the `loyalfed audit` commands."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.anomaly_report import AnomalyKind, find_anomalies
from audit.audit_log import AuditLog
from audit.errors import AuditError
from audit.lineage_event import LineageEvent
from audit.lineage_graph import build_lineage_graph
from loyalfed.cli.app import app

POLICY = "a1" * 32


def test_lineage_graph_of_a_model(flow: Callable) -> None:
    entries = list(enumerate(flow(job="job-1", model="m-1") + flow(job="job-2", model="m-2")))
    graph = build_lineage_graph(entries, "m-1")
    kinds = {node["kind"] for node in graph.nodes.values()}
    assert kinds == {"model", "job", "dataset", "partner", "policy", "approval", "consent_snapshot", "budget"}
    assert graph.epsilon_by_partner == {"freshmart-north": 0.75, "careplus": 0.75}
    assert ("job:job-1", "model:m-1", "produced") in graph.edges
    assert "job:job-2" not in graph.nodes  # the other model's job is not in this lineage
    approvals = [n for n in graph.nodes.values() if n["kind"] == "approval"]
    assert sorted(n["label"] for n in approvals) == ["careplus approved", "freshmart-north approved"]
    assert graph.nodes[f"consent:{'c0' * 32}"]["counts"] == {"records": 2400, "granted": 2100}
    with pytest.raises(AuditError, match=r"no model\.published event for model 'nope'"):
        build_lineage_graph(entries, "nope")


def test_an_honest_flow_has_no_anomalies(flow: Callable) -> None:
    assert find_anomalies(enumerate(flow())) == []


def test_out_of_policy_partner_and_category(flow: Callable) -> None:
    events = flow()
    started = next(i for i, e in enumerate(events) if e.event_type == "job.started")
    extra = [*events[started].inputs, {"partner": "fuelgo", "fingerprint": "99" * 32}]
    events[started] = events[started].model_copy(
        update={
            "inputs": tuple(type(events[started].inputs[0])(**dict(d)) for d in extra),
            "categories": ("transactions", "demographics"),
        }
    )
    kinds = [(a.kind, a.seq) for a in find_anomalies(enumerate(events))]
    assert (AnomalyKind.OUT_OF_POLICY, started) in kinds  # fuelgo and demographics are not in the policy
    assert (AnomalyKind.UNAPPROVED_JOB, started) in kinds  # and fuelgo's officer never approved
    messages = " ".join(a.message for a in find_anomalies(enumerate(events)))
    assert "['fuelgo']" in messages and "['demographics']" in messages


def test_orphan_budget_charge(flow: Callable) -> None:
    events = flow()
    stray = events[10].model_copy(update={"job_id": "job-ghost"})
    no_job = events[10].model_copy(update={"job_id": None})
    found = find_anomalies(enumerate([*events, stray, no_job]))
    assert [(a.kind, a.seq) for a in found] == [
        (AnomalyKind.ORPHAN_BUDGET_CHARGE, 13),
        (AnomalyKind.ORPHAN_BUDGET_CHARGE, 14),
    ]


def test_unusual_access_rate() -> None:
    day0 = datetime(2026, 3, 1, tzinfo=UTC)
    events = []
    for day in range(10):
        count = 200 if day == 7 else 6  # a burst on day 7
        events += [
            LineageEvent(
                event_type="psi.run",
                time=day0 + timedelta(days=day, minutes=i),
                actor="analyst-bob",
                role="analyst",
            )
            for i in range(count)
        ]
    found = find_anomalies(enumerate(events))
    assert [a.kind for a in found] == [AnomalyKind.UNUSUAL_ACCESS_RATE]
    assert found[0].seq == 7 * 6 and "200 events" in found[0].message


@pytest.fixture
def db(tmp_path: Path, flow: Callable) -> Path:
    path = tmp_path / "audit.sqlite"
    with AuditLog.open(path) as log:
        log.append_batch(flow())
        log.append(flow()[10].model_copy(update={"job_id": "job-ghost"}))
    return path


def test_cli_lineage_by_id_and_by_model_directory(db: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "lineage", "--model", "model-1", "--db", str(db), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["model_id"] == "model-1"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.pt").write_bytes(b"weights")
    with AuditLog.open(db) as log:
        digest = hashlib.sha256(b"weights").hexdigest()
        log.append(
            log.events(model_id="model-1")[0][1].model_copy(
                update={"model_id": "model-dir", "outputs": ({"name": "weights.pt", "sha256": digest},)}
            )
        )
    result = runner.invoke(app, ["audit", "lineage", "--model", str(model_dir), "--db", str(db)])
    assert result.exit_code == 0 and "Lineage of model model-dir" in result.stdout


def test_cli_report_and_export(db: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "report", "--db", str(db), "--json"])
    assert json.loads(result.stdout)["anomalies"][0]["kind"] == "orphan_budget_charge"
    result = runner.invoke(app, ["audit", "report", "--db", str(db)])
    assert "job job-ghost never started" in result.stdout
    out = tmp_path / "ol.ndjson"
    result = runner.invoke(app, ["audit", "export-openlineage", "--out", str(out), "--db", str(db)])
    assert result.exit_code == 0 and len(out.read_text().splitlines()) == 14
    result = runner.invoke(app, ["audit", "head", "--db", str(db)])
    assert json.loads(result.stdout)["tree_head"]["tree_size"] == 14


def test_cli_default_db_comes_from_the_data_dir(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALFED_DATA_DIR", str(db.parent))
    key = AuditLog.open(db).public_key_hex
    result = CliRunner().invoke(app, ["audit", "verify", "--json", "--public-key", key])
    assert result.exit_code == 0 and json.loads(result.stdout)["tree_size"] == 14


def test_a_job_without_policy_is_reported_once(flow: Callable) -> None:
    events = [e.model_copy(update={"policy_hash": None}) if e.job_id else e for e in flow()]
    found = find_anomalies(enumerate(events))
    assert [(a.kind, a.message) for a in found] == [
        (AnomalyKind.OUT_OF_POLICY, "job job-1: its events carry no policy hash")
    ]
