"""Points interchange and PSI at the coordinator, through the API on a real SQLite store.

Agreements await both officers' signatures, verified against the registered officer keys (a
signature by the wrong key, for another hash or replayed is refused; an edited stored signature
no longer counts). Settlement totals arrive in the node's own format (``coordinator_totals`` of
a real ``Statement``), never with transfers or tokens; the two partners' reports are compared and
a mismatch is flagged and in the audit log. PSI run summaries carry counts only and are idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from coordinator.store.database import open_engine
from participant_node.points.settlement import DirectionTotals, Statement, coordinator_totals
from tests.coordinator.service.coordinator_federation import (
    PARTNERS,
    Federation,
    agreement_document,
    psi_run_record,
    settlement_totals,
)

NORTH, SOUTH = PARTNERS


def _statement(issuer: str, body: dict[str, Any]) -> Statement:
    """The node-side statement whose ``coordinator_totals`` is ``body`` (digest and hash are the node's)."""
    directions = tuple(
        DirectionTotals(**d, transfers=3, transfers_digest="00" * 32) for d in body["directions"]
    )
    return Statement(
        agreement_id=body["agreement_id"],
        agreement_hash="11" * 32,
        issuer=issuer,
        period_start=datetime.fromisoformat(body["period_start"]),
        period_end=datetime.fromisoformat(body["period_end"]),
        currency=body["currency"],
        directions=directions,
        payer=body["payer"],
        payee=body["payee"],
        net_amount=body["net_amount"],
    )


def test_agreement_awaits_both_officers_and_verifies_each_signature(
    federation: Federation, state_dir: Path
) -> None:
    document = agreement_document()
    drafted = federation.call(f"operator-{NORTH}", "POST", "/points/agreements", json={"agreement": document})
    assert drafted.status_code == 201, drafted.text
    digest = drafted.json()["agreement_hash"]
    assert drafted.json()["status"] == "awaiting_signature" and drafted.json()["awaiting"] == sorted(PARTNERS)
    again = federation.call(f"operator-{NORTH}", "POST", "/points/agreements", json={"agreement": document})
    assert again.status_code == 409
    arbitrage = agreement_document("loop-2026")
    arbitrage["terms"][1] |= {"block_in": 250, "block_out": 350}  # 0.8 × 1.4 > 1
    refused = federation.call(f"officer-{NORTH}", "POST", "/points/agreements", json={"agreement": arbitrage})
    assert refused.status_code == 422 and "arbitrage" in refused.json()["error"]["message"]

    path = f"/points/agreements/{digest}/signatures"
    north = federation.sign_agreement(NORTH, document)
    forged = dict(
        north, signature=north["signature"][:-2] + ("00" if north["signature"][-2:] != "00" else "01")
    )
    assert federation.call(f"officer-{NORTH}", "POST", path, json=forged).status_code == 403
    changed = agreement_document()
    changed["epoch"] = 2  # another hash: a signature over it is no signature of this agreement
    other_hash = federation.sign_agreement(NORTH, changed)
    assert federation.call(f"officer-{NORTH}", "POST", path, json=other_hash).status_code == 403
    signed = federation.call(f"officer-{NORTH}", "POST", path, json=north)
    assert signed.status_code == 201 and signed.json()["awaiting"] == [SOUTH]
    assert federation.call(f"officer-{NORTH}", "POST", path, json=north).status_code == 409  # replay
    pending = federation.call(f"officer-{SOUTH}", "GET", "/points/agreements", params={"pending": "true"})
    assert [a["agreement_hash"] for a in pending.json()] == [digest]
    south = federation.sign_agreement(SOUTH, document)
    done = federation.call(f"officer-{SOUTH}", "POST", path, json=south).json()
    assert done["status"] == "signed" and done["signed_by"] == sorted(PARTNERS)
    assert (
        all(s["verified"] for s in done["signatures"])
        and done["document"]["agreement_id"] == document["agreement_id"]
    )
    assert federation.call("auditor", "GET", "/points/agreements", params={"pending": "true"}).json() == []

    engine = open_engine(f"sqlite:///{state_dir / 'coordinator.sqlite'}")
    with engine.begin() as connection:  # someone edits the store: the edited signature stops counting
        connection.execute(
            sa.text(
                "UPDATE interchange_agreement_signatures SET signed_at = signed_at, officer = 'x',"
                " signature = :s WHERE partner_id = :p"
            ),
            {"s": "ab" * 64, "p": SOUTH},
        )
    engine.dispose()
    shown = federation.call("auditor", "GET", f"/points/agreements/{digest}").json()
    assert shown["status"] == "awaiting_signature" and shown["awaiting"] == [SOUTH]


def test_settlement_totals_are_compared_and_a_mismatch_is_flagged_and_audited(federation: Federation) -> None:
    body = settlement_totals()
    north = coordinator_totals(_statement(NORTH, body), reconciled=True)
    assert north == body  # the node's own format, field for field
    first = federation.call(f"node-{NORTH}", "POST", "/points/settlements", json=north)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "reported" and first.json()["peer"] == SOUTH
    south = coordinator_totals(_statement(SOUTH, body), reconciled=True)
    assert (
        federation.call(f"node-{SOUTH}", "POST", "/points/settlements", json=south).json()["status"]
        == "matched"
    )
    rows = federation.call(f"operator-{NORTH}", "GET", "/points/settlements").json()
    assert {(r["reporter"], r["status"]) for r in rows} == {(NORTH, "matched"), (SOUTH, "matched")}

    lower = settlement_totals(points=4_750)  # SOUTH's recovery pass finds fewer posted transfers
    resent = federation.call(f"node-{SOUTH}", "POST", "/points/settlements", json=lower).json()
    assert resent["status"] == "mismatch"
    assert (
        f"directions.{NORTH}->{SOUTH}.points" in resent["differences"]
        and "net_amount" in resent["differences"]
    )
    flagged = federation.call("auditor", "GET", "/points/settlements", params={"status": "mismatch"}).json()
    assert {r["reporter"] for r in flagged} == set(PARTNERS)
    events = federation.call(
        "auditor", "GET", "/audit/events", params={"event_type": "points.settlement_mismatch"}
    )
    assert events.status_code == 200 and events.json()[-1]["partner"] == SOUTH

    for extra in ({"transfers": [{"transfer_id": "t-1"}]}, {"link_tokens": ["ab" * 16]}):
        refused = federation.call(f"node-{NORTH}", "POST", "/points/settlements", json=body | extra)
        assert refused.status_code == 422  # totals only: nothing else is accepted
    inconsistent = body | {"net_amount": "999"}
    assert (
        federation.call(f"node-{NORTH}", "POST", "/points/settlements", json=inconsistent).status_code == 422
    )
    outsiders = settlement_totals("other-deal", (SOUTH, "brand-x"))
    assert federation.call(f"node-{NORTH}", "POST", "/points/settlements", json=outsiders).status_code == 403


def test_psi_run_summaries_are_counts_only_and_idempotent(federation: Federation) -> None:
    record = psi_run_record(NORTH, SOUTH, "session-9f3a2c1b")
    first = federation.call(f"node-{NORTH}", "POST", "/psi/runs", json=record)
    assert first.status_code == 201, first.text
    assert federation.call(f"node-{NORTH}", "POST", "/psi/runs", json=record).status_code == 201
    runs = federation.call(f"operator-{SOUTH}", "GET", "/psi/runs").json()
    assert len(runs) == 1 and runs[0]["result_cardinality"] == 420 and runs[0]["peer"] == SOUTH
    assert set(runs[0]) >= {"own_set_size", "peer_set_size", "status", "ran_at"}
    assert federation.call(f"node-{SOUTH}", "POST", "/psi/runs", json=record).status_code == 403
    incomplete = record | {"session_id": "session-2", "result_cardinality": None}
    assert federation.call(f"node-{NORTH}", "POST", "/psi/runs", json=incomplete).status_code == 422
    with_members = record | {"session_id": "session-3", "members": ["+8613800000000"]}
    assert federation.call(f"node-{NORTH}", "POST", "/psi/runs", json=with_members).status_code == 422
    too_many = record | {"session_id": "session-4", "result_cardinality": 5_000}
    assert federation.call(f"node-{NORTH}", "POST", "/psi/runs", json=too_many).status_code == 422
    events = federation.call(
        "auditor", "GET", "/audit/events", params={"event_type": "psi.run_reported"}
    ).json()
    assert len(events) == 1 and events[0]["details"]["result_cardinality"] == 420
    assert datetime.fromisoformat(runs[0]["ran_at"]).astimezone(UTC).day == 2
