"""The coordinator service settles a job's budget from each node's own accountant.

A running job's ServerApp reports, with its job-run token, the ε each node's accountant charged;
the service's budget table then holds those figures instead of the reservation (the node is the
authority: lost, late and aborted rounds are in its figure), each settlement is a
``budget.charged`` event, and a partner the job reserved nothing on cannot be settled.
"""

from __future__ import annotations

from pathlib import Path

from audit import AuditLog, EventType
from tests.coordinator.service.coordinator_federation import PARTNERS, Federation
from tests.coordinator.service.test_api_flow import _run_job


def test_a_jobs_reservation_is_settled_from_the_node_accountants(
    federation: Federation, state_dir: Path
) -> None:
    job_id, run_token = _run_job(federation, state_dir)  # reserves ε 1.0 on each partner
    federation.tokens["run"] = run_token
    reserved = {
        b["partner_id"]: b["epsilon_reserved"] for b in federation.call("auditor", "GET", "/budgets").json()
    }
    assert reserved == {partner: 1.0 for partner in PARTNERS}
    spent = {PARTNERS[0]: 0.8062, PARTNERS[1]: 0.0}  # the second node's update never arrived
    for partner, epsilon in spent.items():
        body = {"kind": "settlement", "partner_id": partner, "epsilon": epsilon}
        assert federation.call("run", "POST", f"/jobs/{job_id}/events", json=body).status_code == 204
    stranger = {"kind": "settlement", "partner_id": "nobody", "epsilon": 0.1}
    assert federation.call("run", "POST", f"/jobs/{job_id}/events", json=stranger).status_code == 409
    body = {"kind": "settlement", "partner_id": PARTNERS[0], "epsilon": 0.5}
    assert federation.call("analyst", "POST", f"/jobs/{job_id}/events", json=body).status_code == 403
    budgets = {
        b["partner_id"]: b["epsilon_reserved"] for b in federation.call("auditor", "GET", "/budgets").json()
    }
    assert budgets == spent
    with AuditLog.open(state_dir / "audit.sqlite") as log:
        charged = [
            (e.partner, e.epsilon) for _, e in log.iter_events() if e.event_type == EventType.BUDGET_CHARGED
        ]
    assert charged == list(spent.items())
