"""What nodes report beside their heartbeats, through the API on a real SQLite store.

Data-subject requests: a node reports its own partner's (never another's), the newest status of
each is kept (a completed erasure replaces the open one), an officer reads their own partner's
with overdue marking, the auditor reads every partner's, and the roles that may not read them are
refused. A request id that could carry an identifier is refused. Consent counts: coarse (multiples
of the granularity, null below k) or refused; the latest report replaces the previous one.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from coordinator.store.database import open_engine
from tests.coordinator.service.coordinator_federation import (
    PARTNERS,
    Federation,
    consent_count_report,
    subject_request_batch,
)

NORTH, SOUTH = PARTNERS


def _report(federation: Federation, partner: str, body: dict) -> dict:
    reply = federation.call(f"node-{partner}", "POST", f"/nodes/{partner}/subject-requests", json=body)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_subject_requests_newest_status_scoped_by_role(federation: Federation, state_dir: Path) -> None:
    assert _report(federation, NORTH, subject_request_batch(completed=False)) == {"received": 2, "changed": 2}
    assert _report(federation, NORTH, subject_request_batch(completed=False)) == {"received": 2, "changed": 0}
    assert _report(federation, NORTH, subject_request_batch(completed=True)) == {"received": 2, "changed": 1}
    _report(federation, SOUTH, subject_request_batch(erasure_id="erasure-00ff00ff00ff"))

    own = federation.call(f"officer-{NORTH}", "GET", "/subject-requests").json()
    assert {r["partner_id"] for r in own} == {NORTH} and len(own) == 2
    by_kind = {r["kind"]: r for r in own}
    erasure, access = by_kind["erasure"], by_kind["access"]
    assert erasure["status"] == "completed" and erasure["completed_at"].startswith("2026-03-02")
    assert erasure["overdue"] is False  # completed within its deadline
    assert access["status"] == "open" and access["overdue"] is True  # due 2026-02-04, still open
    assert own[0]["request_id"] == "access-9f8e7d6c5b4a"  # earliest deadline first

    every = federation.call("auditor", "GET", "/subject-requests?kind=erasure").json()
    assert {r["partner_id"] for r in every} == set(PARTNERS) and {r["kind"] for r in every} == {"erasure"}
    for refused in ("analyst", f"operator-{NORTH}", f"node-{NORTH}"):
        assert federation.call(refused, "GET", "/subject-requests").status_code == 403, refused

    # A node reports for its own partner only; an officer cannot report at all.
    path = f"/nodes/{SOUTH}/subject-requests"
    assert federation.call(f"node-{NORTH}", "POST", path, json=subject_request_batch()).status_code == 403
    assert federation.call(f"officer-{SOUTH}", "POST", path, json=subject_request_batch()).status_code == 403

    engine = open_engine(f"sqlite:///{state_dir / 'coordinator.sqlite'}")
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT request_id, status FROM subject_requests")).all()
    engine.dispose()
    assert len(stored) == 4 and ("erasure-0a1b2c3d4e5f", "completed") in stored
    events = federation.call("auditor", "GET", "/audit/events?event_type=dsr.reported").json()
    assert len(events) == 5  # north: two new, one completed; south: two new; repeats add none


def test_a_request_that_could_carry_an_identifier_is_refused(federation: Federation) -> None:
    for request_id in ("erasure-13800138000", "erasure-alice@example.com", "access-0a1b2c3d4e5f"):
        body = subject_request_batch(erasure_id=request_id)
        reply = federation.call(f"node-{NORTH}", "POST", f"/nodes/{NORTH}/subject-requests", json=body)
        assert reply.status_code == 422, (request_id, reply.text)
        assert "alice" not in reply.text and "13800138000" not in reply.text
    late = subject_request_batch()
    late["requests"][0]["deadline"] = "2026-02-01T00:00:00+00:00"  # before it was received
    reply = federation.call(f"node-{NORTH}", "POST", f"/nodes/{NORTH}/subject-requests", json=late)
    assert reply.status_code == 422


def test_consent_counts_are_coarse_and_replaced(federation: Federation) -> None:
    path = f"/nodes/{NORTH}/consent-counts"
    assert federation.call(f"node-{NORTH}", "PUT", path, json=consent_count_report(1_230)).status_code == 200
    for fine in (1_234, 10):  # not a multiple of 10; below k = 20
        reply = federation.call(f"node-{NORTH}", "PUT", path, json=consent_count_report(fine))
        assert reply.status_code == 422, fine
    assert federation.call(f"node-{SOUTH}", "PUT", path, json=consent_count_report()).status_code == 403
    assert federation.call("analyst", "PUT", path, json=consent_count_report()).status_code == 403
    assert federation.call(f"node-{NORTH}", "PUT", path, json=consent_count_report(40)).status_code == 200

    counts = federation.call("analyst", "GET", "/consent-counts").json()
    assert [(c["partner_id"], c["purpose"], c["members"]) for c in counts] == [
        (NORTH, "analytics.churn_model", 40),
        (NORTH, "analytics.propensity_model", None),
    ]
    churn = federation.call("analyst", "GET", "/consent-counts?purpose=analytics.churn_model").json()
    assert len(churn) == 1 and churn[0]["granularity"] == 10
    assert federation.call(f"node-{NORTH}", "GET", "/consent-counts").status_code == 403
