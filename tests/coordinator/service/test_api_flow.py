"""The coordinator API end to end (in-process): policies and signed decisions, the job gate, progress,
models, errors that never echo a request, and an audit event for every state change."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from audit import AuditLog
from policies.approval import ApprovalDecision
from tests.coordinator.service.coordinator_federation import PARTNERS, Federation, job_body, policy_document


def _draft(federation: Federation, **kwargs: object) -> dict[str, object]:
    reply = federation.call("analyst", "POST", "/policies", json={"document": policy_document(**kwargs)})  # type: ignore[arg-type]
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_unauthenticated_reads_are_refused_health_and_openapi_are_public(client: TestClient) -> None:
    assert client.get("/api/v1/health").json()["status"] == "ok"
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert "/api/v1/jobs/{job_id}" in client.get("/openapi.json").json()["paths"]


def test_policy_versions_and_diff(federation: Federation) -> None:
    first = _draft(federation)
    assert first["version"] == 1 and first["approvals"] == dict.fromkeys(PARTNERS, "pending")
    assert _draft(federation)["version"] == 1  # the same document again is the same version
    second = _draft(federation, epsilon=2.0)
    assert second["version"] == 2 and second["hash"] != first["hash"]
    diff = federation.call("auditor", "GET", "/policies/churn-2026/diff", params={"from": 1, "to": 2}).json()
    assert diff["changes"] == [{"path": "privacy.epsilon", "before": 3.0, "after": 2.0}]
    pending = federation.call(
        "officer-freshmart-north", "GET", "/policies", params={"pending_for": "freshmart-north"}
    )
    assert [p["version"] for p in pending.json()] == [2]


def test_signed_decisions_forgery_wrong_partner_and_replay_are_refused(federation: Federation) -> None:
    version = _draft(federation)
    north, south = PARTNERS
    assert federation.decide(north, version, ApprovalDecision.APPROVED).status_code == 201
    # Signed by south's officer key but posted by north's officer: verification fails, vaguely.
    forged = federation.sign(south, version, ApprovalDecision.APPROVED)
    path = f"/policies/churn-2026/versions/{version['version']}/decisions"
    reply = federation.call(f"officer-{north}", "POST", path, json=forged)
    assert reply.status_code == 403 and reply.json()["error"]["message"] == "signed decision is not valid"
    # A flipped decision keeps the old signature: refused.
    good = federation.sign(south, version, ApprovalDecision.REJECTED)
    flipped = {
        "statement": good["statement"].replace('"rejected"', '"approved"'),
        "signature": good["signature"],
    }
    assert federation.call(f"officer-{south}", "POST", path, json=flipped).status_code == 403
    # Replays: the same statement twice, and an older statement after a newer one.
    replay = federation.sign(south, version, ApprovalDecision.APPROVED)
    assert federation.call(f"officer-{south}", "POST", path, json=replay).status_code == 201
    again = federation.call(f"officer-{south}", "POST", path, json=replay)
    assert again.status_code == 409 and "replayed" in again.json()["error"]["message"]
    older = federation.sign(
        south, version, ApprovalDecision.APPROVED, now=datetime.now(UTC) - timedelta(days=1)
    )
    assert federation.call(f"officer-{south}", "POST", path, json=older).status_code == 409
    stored = federation.call("auditor", "GET", path).json()
    assert sorted(d["partner_id"] for d in stored) == [north, south]


def test_job_waits_for_approvals_then_queues_and_reserves_budget(federation: Federation) -> None:
    version = _draft(federation)
    job = federation.call("analyst", "POST", "/jobs", json=job_body())
    assert job.status_code == 201 and job.json()["state"] == "awaiting_approval"
    job_id = job.json()["job_id"]
    for partner in PARTNERS:
        federation.decide(partner, version, ApprovalDecision.APPROVED)
    # A second job on the now-approved policy goes straight to queued and reserves ε on both partners.
    queued = federation.call("analyst", "POST", "/jobs", json=job_body(epsilon=2.5)).json()
    assert queued["state"] == "queued"
    budgets = {b["partner_id"]: b for b in federation.call("auditor", "GET", "/budgets").json()}
    assert budgets["freshmart-north"]["epsilon_reserved"] == 2.5
    # A job over a partner's cap fails with the reason.
    year = datetime.now(UTC).year
    cap = federation.call(
        "officer-freshmart-south", "PUT", f"/budgets/freshmart-south/{year}", json={"epsilon_cap": 3.0}
    )
    assert cap.status_code == 200
    over = federation.call("analyst", "POST", "/jobs", json=job_body(epsilon=1.0)).json()
    detail = federation.call("analyst", "GET", f"/jobs/{over['job_id']}").json()
    assert detail["state"] == "failed" and "freshmart-south" in detail["reason"]
    stopped = federation.call("analyst", "POST", f"/jobs/{job_id}/stop").json()
    assert stopped["state"] == "stopped"
    logs = federation.call("analyst", "GET", f"/jobs/{job_id}/logs").json()
    assert [line["message"].split(":")[0] for line in logs][-1] == "state stopped"


def test_a_rejection_fails_the_job_with_the_partner_named(federation: Federation) -> None:
    version = _draft(federation)
    job_id = federation.call("analyst", "POST", "/jobs", json=job_body()).json()["job_id"]
    federation.decide("freshmart-north", version, ApprovalDecision.REJECTED)
    second = federation.call("analyst", "POST", "/jobs", json=job_body()).json()
    detail = federation.call("analyst", "GET", f"/jobs/{second['job_id']}").json()
    assert detail["state"] == "failed" and "freshmart-north rejected" in detail["reason"]
    assert federation.call("analyst", "GET", f"/jobs/{job_id}").json()["state"] == "awaiting_approval"


def test_a_job_outside_its_policy_or_naming_coordinator_fields_is_refused(federation: Federation) -> None:
    version = _draft(federation)
    refusals = {
        "epsilon above the policy": job_body(epsilon=5.0),
        "other purpose": {**job_body(), "task": "propensity"},
        "stale hash": {**job_body(), "policy_hash": "0" * 64},
        "job id chosen": {**job_body(), "job_id": "job-mine"},
        "no policy": {k: v for k, v in job_body().items() if k != "policy_id"},
    }
    for case, body in refusals.items():
        reply = federation.call("analyst", "POST", "/jobs", json=body)
        assert reply.status_code == 422, case
    accepted = federation.call(
        "analyst", "POST", "/jobs", json={**job_body(), "policy_hash": version["hash"]}
    )
    assert accepted.status_code == 201
    spec = federation.call("analyst", "GET", f"/jobs/{accepted.json()['job_id']}").json()["spec"]
    assert spec["job_id"] == accepted.json()["job_id"] and spec["spec_version"] == 2


def test_a_rejection_needs_a_reason(federation: Federation) -> None:
    version = _draft(federation)
    body = federation.sign("freshmart-north", version, ApprovalDecision.REJECTED)
    path = f"/policies/churn-2026/versions/{version['version']}/decisions"
    reply = federation.call("officer-freshmart-north", "POST", path, json=body)
    assert reply.status_code == 422 and "reason" in reply.json()["error"]["message"]
    shown = federation.call("auditor", "GET", "/policies/churn-2026").json()
    assert [v["version"] for v in shown["versions"]] == [1] and shown["document"]["policy_id"] == "churn-2026"


def test_error_bodies_never_echo_the_request(federation: Federation) -> None:
    secret = "+8613800138000"
    replies = [
        federation.call("analyst", "POST", "/jobs", json={**job_body(), "task": secret}),
        federation.call("analyst", "POST", "/policies", json={"document": {"policy_id": secret}}),
        federation.call("admin", "POST", "/organisations", json={"id": "x", secret: 1}),
        federation.call(
            "officer-freshmart-north", "POST", "/officers/keys", json={"public_key_b64": secret * 4}
        ),
    ]
    for reply in replies:
        assert 400 <= reply.status_code < 500, reply.text
        assert secret not in reply.text and set(reply.json()) == {"error"}


def test_every_state_change_appends_an_audit_event(federation: Federation, state_dir: Path) -> None:
    version = _draft(federation)
    federation.decide("freshmart-north", version, ApprovalDecision.APPROVED)
    federation.call("analyst", "POST", "/jobs", json=job_body())
    federation.client.close() if isinstance(federation.client, TestClient) else None
    with AuditLog.open(state_dir / "audit.sqlite") as log:
        kinds = [event.event_type.value for _seq, event in log.iter_events()]
    assert kinds.count("organisation.registered") == 2 and kinds.count("officer_key.registered") == 2
    assert kinds.count("credential.issued") == 8
    assert kinds[-3:] == ["policy.drafted", "policy.approved", "job.submitted"]


def _run_job(federation: Federation, state_dir: Path) -> tuple[str, str]:
    """Queue an approved job, then mark it running with a job-run token as the runner does."""
    from coordinator.platform.audit_trail import AuditTrail
    from coordinator.platform.job_runs import begin_run
    from coordinator.store.database import open_store

    version = _draft(federation)
    for partner in PARTNERS:
        federation.decide(partner, version, ApprovalDecision.APPROVED)
    job_id = federation.call("analyst", "POST", "/jobs", json=job_body()).json()["job_id"]
    engine, sessions = open_store(f"sqlite:///{state_dir / 'coordinator.sqlite'}")
    trail = AuditTrail.open(state_dir / "audit-test.sqlite")
    with sessions() as session:
        token = begin_run(session, trail, job_id=job_id)
    trail.close()
    engine.dispose()
    return job_id, token


def test_job_run_token_reports_progress_refusals_and_model(federation: Federation, state_dir: Path) -> None:
    job_id, run_token = _run_job(federation, state_dir)
    federation.tokens["run"] = run_token
    progress = {"round": 1, "nodes_answered": 2, "epsilon_spent": 0.7, "metrics": {"auc": 0.71}}
    assert federation.call("run", "POST", f"/jobs/{job_id}/progress", json=progress).status_code == 204
    assert federation.call("analyst", "POST", f"/jobs/{job_id}/progress", json=progress).status_code == 403
    refusal = {"kind": "refusal", "partner_id": "freshmart-south", "reason": "no signed approval"}
    assert federation.call("run", "POST", f"/jobs/{job_id}/events", json=refusal).status_code == 204
    _settle_from_node_accountants(federation, job_id, state_dir)
    # A stop asked of a running job is flagged for the runner, and is itself an audit event.
    assert federation.call("analyst", "POST", f"/jobs/{job_id}/stop").json()["state"] == "running"
    with AuditLog.open(state_dir / "audit.sqlite") as log:
        last = [event for _, event in log.iter_events()][-1]
    assert (last.event_type, last.job_id, last.details) == (
        "job.stopped",
        job_id,
        {"state": "stop_requested"},
    )
    weights = b"\x00weights\x01" * 100
    model = {
        "job_id": job_id,
        "card": {"task": "churn"},
        "weights_b64": base64.b64encode(weights).decode(),
        "sha256": hashlib.sha256(b"other").hexdigest(),
    }
    assert federation.call("run", "POST", "/models", json=model).status_code == 422  # sha256 mismatch
    model["sha256"] = hashlib.sha256(weights).hexdigest()
    published = federation.call("run", "POST", "/models", json=model)
    assert published.status_code == 201, published.text
    model_id = published.json()["model_id"]
    outcome = {"kind": "outcome", "state": "finished"}
    assert federation.call("run", "POST", f"/jobs/{job_id}/events", json=outcome).status_code == 204
    detail = federation.call("auditor", "GET", f"/jobs/{job_id}").json()
    assert detail["state"] == "finished" and detail["model_id"] == model_id
    assert detail["rounds"] == [
        {"round": 1, "nodes_answered": 2, "epsilon_spent": 0.7, "metrics": {"auc": 0.71}}
    ]
    assert detail["refusals"] == [{"partner_id": "freshmart-south", "reason": "no signed approval"}]
    assert federation.call("auditor", "GET", f"/models/{model_id}/download").content == weights
    assert federation.call("node-freshmart-north", "GET", f"/models/{model_id}/download").status_code == 403
    assert federation.call("run", "POST", f"/jobs/{job_id}/progress", json=progress).status_code == 409
    listed = federation.call("node-freshmart-north", "GET", "/models").json()
    assert [m["artefact_sha256"] for m in listed] == [hashlib.sha256(weights).hexdigest()]
    assert json.dumps(listed).find("weights") < 0


def _settle_from_node_accountants(federation: Federation, job_id: str, state_dir: Path) -> None:
    """The ServerApp reports each node accountant's figure; the budget table settles to it (the
    reservation was ε 1.0 on each partner; the second node's update never arrived)."""
    spent = {PARTNERS[0]: 0.8062, PARTNERS[1]: 0.0}
    for partner, epsilon in spent.items():
        body = {"kind": "settlement", "partner_id": partner, "epsilon": epsilon}
        assert federation.call("run", "POST", f"/jobs/{job_id}/events", json=body).status_code == 204
    stranger = {"kind": "settlement", "partner_id": "nobody", "epsilon": 0.1}
    assert federation.call("run", "POST", f"/jobs/{job_id}/events", json=stranger).status_code == 409
    forged = {"kind": "settlement", "partner_id": PARTNERS[0], "epsilon": 0.0}
    assert federation.call("analyst", "POST", f"/jobs/{job_id}/events", json=forged).status_code == 403
    budgets = federation.call("auditor", "GET", "/budgets").json()
    assert {b["partner_id"]: b["epsilon_reserved"] for b in budgets} == spent
    with AuditLog.open(state_dir / "audit.sqlite") as log:
        charged = [(e.partner, e.epsilon) for _, e in log.iter_events() if e.event_type == "budget.charged"]
    assert charged == list(spent.items())


def test_the_job_runner_rechecks_waiting_jobs_only_when_a_decision_arrives(
    client: TestClient, federation: Federation
) -> None:
    from sqlalchemy import event

    from coordinator.job_runner import JobRunner

    state = client.app.state.coordinator  # type: ignore[attr-defined]
    runner = JobRunner(state.sessions, state.trail, None, coordinator_url="", coordinator_ca=None)
    version = _draft(federation)
    job_id = federation.call("analyst", "POST", "/jobs", json=job_body()).json()["job_id"]
    statements: list[str] = []

    def _record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(state.engine, "before_cursor_execute", _record)
    try:
        runner.tick()  # first look: the waiting job's gate is read
        assert any("FROM policy_versions" in s for s in statements)
        statements.clear()
        runner.tick()  # nothing changed: the waiting job is not read again
        assert statements and not any("FROM policy_versions" in s for s in statements)
        federation.decide(PARTNERS[0], version, ApprovalDecision.APPROVED)
        runner.tick()
        assert federation.call("analyst", "GET", f"/jobs/{job_id}").json()["state"] == "awaiting_approval"
        federation.decide(PARTNERS[1], version, ApprovalDecision.APPROVED)
        runner.tick()  # the second officer's decision moves it on
        assert federation.call("analyst", "GET", f"/jobs/{job_id}").json()["state"] == "queued"
    finally:
        event.remove(state.engine, "before_cursor_execute", _record)
