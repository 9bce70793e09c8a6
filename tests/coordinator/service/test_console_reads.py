"""The reads the console's screens make, through the real API and store: a job's lineage with its
context (policy, every officer's decision, the partners' datasets), budget use by purpose and dataset
month by month, and the job list in pages."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fastapi.testclient import TestClient

from coordinator.platform import job_runs
from policies.approval import ApprovalDecision
from tests.coordinator.service.coordinator_federation import PARTNERS, Federation, job_body, policy_document
from tests.model_card_example import example_card

TABLES = {
    "members": {"columns": ["member_id", "joined_at"], "rows_rounded": 1200},
    "transactions": {"columns": ["member_id", "timestamp", "amount"], "rows_rounded": 50_000},
}


def _approved_policy(federation: Federation) -> dict[str, Any]:
    reply = federation.call("analyst", "POST", "/policies", json={"document": policy_document()})
    version = reply.json()
    for partner in PARTNERS:
        assert federation.decide(partner, version, ApprovalDecision.APPROVED).status_code == 201
    return dict(version)


def _datasets(federation: Federation) -> None:
    for partner in PARTNERS:
        body = {"partner_id": partner, "name": f"{partner}-loyalty", "tables": TABLES}
        assert federation.call(f"node-{partner}", "POST", "/datasets", json=body).status_code == 201


def _finish_with_model(client: TestClient, job_id: str) -> str:
    """What the job's ServerApp does over the API with the run token the runner mints."""
    sessions = client.app.state.coordinator.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        token = job_runs.begin_run(session, client.app.state.coordinator.trail, job_id=job_id)  # type: ignore[attr-defined]
    runner = {"Authorization": f"Bearer {token}"}
    progress = {"round": 1, "nodes_answered": 2, "epsilon_spent": 0.9, "metrics": {"train_loss": 0.5}}
    assert client.post(f"/api/v1/jobs/{job_id}/progress", json=progress, headers=runner).status_code == 204
    weights = b"\x00" * 64
    card = example_card().model_dump(mode="json") | {"job_id": job_id}
    model = {
        "job_id": job_id,
        "card": card,
        "weights_b64": base64.b64encode(weights).decode(),
        "sha256": hashlib.sha256(weights).hexdigest(),
    }
    reply = client.post("/api/v1/models", json=model, headers=runner)
    assert reply.status_code == 201, reply.text
    outcome = {"kind": "outcome", "state": "finished"}
    assert client.post(f"/api/v1/jobs/{job_id}/events", json=outcome, headers=runner).status_code == 204
    return str(reply.json()["model_id"])


def test_a_jobs_lineage_shows_its_policy_every_decision_and_the_partners_datasets(
    client: TestClient, federation: Federation
) -> None:
    _datasets(federation)
    policy = _approved_policy(federation)
    job_id = federation.call("analyst", "POST", "/jobs", json=job_body()).json()["job_id"]
    model_id = _finish_with_model(client, job_id)
    # Another job under another policy must stay out of this job's graph.
    other = federation.call("analyst", "POST", "/policies", json={"document": policy_document("other")})
    assert other.status_code == 201

    graph = federation.call("auditor", "GET", "/audit/lineage", params={"job": job_id}).json()
    edges = {(e["source"], e["relation"], e["target"]) for e in graph["edges"]}
    policy_node, job_node = f"policy:{policy['hash']}", f"job:{job_id}"
    assert (job_node, "produced", f"model:{model_id}") in edges
    assert (policy_node, "governs", job_node) in edges
    for partner in PARTNERS:
        assert (f"approval:{partner}:{policy['hash']}", "approved", policy_node) in edges
        inputs = [
            s for s, r, t in edges if r == "input" and t == job_node and s.startswith(f"dataset:{partner}:")
        ]
        assert len(inputs) == 1, edges
    kinds = {n["kind"] for n in graph["nodes"]}
    assert kinds == {"dataset", "policy", "approval", "job", "model"}
    assert other.json()["hash"] not in str(graph)


def test_budget_use_by_purpose_and_dataset_month_by_month(client: TestClient, federation: Federation) -> None:
    _datasets(federation)
    _approved_policy(federation)
    for _ in range(2):
        assert federation.call("analyst", "POST", "/jobs", json=job_body(epsilon=1.5)).status_code == 201
    partner = PARTNERS[0]
    usage = federation.call(f"officer-{partner}", "GET", f"/budgets/{partner}/usage").json()
    assert usage["partner_id"] == partner and usage["epsilon_cap"] == 10.0
    [series] = usage["series"]
    assert series["purpose"] == "analytics.churn_model" and series["dataset"] == f"{partner}-loyalty"
    assert series["jobs"] == 2 and series["epsilon"] == 3.0
    assert len(series["months"]) == 12 and sum(series["months"]) == 3.0
    assert federation.call("analyst", "GET", "/budgets/nobody/usage").status_code == 404


def test_the_job_list_pages_newest_first_with_the_total(federation: Federation) -> None:
    _approved_policy(federation)
    ids = [
        federation.call("analyst", "POST", "/jobs", json=job_body(epsilon=0.5)).json()["job_id"]
        for _ in range(3)
    ]
    first = federation.call("analyst", "GET", "/jobs", params={"limit": 2})
    assert first.headers["X-Total-Count"] == "3"
    second = federation.call("analyst", "GET", "/jobs", params={"limit": 2, "offset": 2})
    paged = [j["job_id"] for j in first.json() + second.json()]
    assert sorted(paged) == sorted(ids) and len(second.json()) == 1
    everything = federation.call("analyst", "GET", "/jobs")
    assert [j["job_id"] for j in everything.json()] == paged  # the same order without a limit
    assert federation.call("analyst", "GET", "/jobs", params={"limit": 0}).status_code == 422
