"""A federation of principals (every role, officer signing keys) calling a coordinator API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from coordinator.service import CoordinatorSettings, create_app
from coordinator.superlink_supervisor import free_port
from policies.approval import ApprovalDecision
from policies.interchange_agreement import parse_agreement, sign_agreement
from policies.signed_approval import public_key_b64, sign_decision

PARTNERS = ("freshmart-north", "freshmart-south")
API = "/api/v1"


def policy_document(policy_id: str = "churn-2026", epsilon: float = 3.0) -> dict[str, Any]:
    return {
        "policy_id": policy_id,
        "title": "Churn model across FreshMart store groups",
        "purpose": "analytics.churn_model",
        "partners": list(PARTNERS),
        "regions": ["CN"],
        "coordinator_region": "CN",
        "columns": {
            "members": ["member_id", "joined_at", "tier"],
            "transactions": ["member_id", "timestamp", "amount", "quantity", "category"],
        },
        "privacy": {"epsilon": epsilon, "delta": 1e-5},
        "impact_assessment": {"reference": "PIA-2026-01", "completed_on": "2026-01-10"},
        "joint_handling_agreement": "JHA-FreshMart-2026",
    }


def agreement_document(
    agreement_id: str = "north-south-2026", partners: tuple[str, str] = PARTNERS
) -> dict[str, Any]:
    """A points-interchange agreement between ``partners`` (250 → 200 one way, 250 → 150 back)."""
    caps = {
        "min_points": 250,
        "max_points": 5_000,
        "member_daily_cap": 10_000,
        "member_monthly_cap": 20_000,
        "partner_daily_cap": 1_000_000,
        "fee_per_point": "0.01",
        "fee_ceiling": 30,
    }
    a, b = partners
    return {
        "agreement_id": agreement_id,
        "partners": [a, b],
        "programmes": {a: f"{a}-rewards", b: f"{b}-club"},
        "currency": "CNY",
        "terms": [
            {"source": a, "destination": b, "block_in": 250, "block_out": 200, "settlement_price": "0.005"}
            | caps,
            {"source": b, "destination": a, "block_in": 250, "block_out": 150, "settlement_price": "0.004"}
            | caps,
        ],
        "valid_from": "2026-01-01T00:00:00+00:00",
        "valid_until": "2027-01-01T00:00:00+00:00",
        "netting_period_days": 30,
    }


def settlement_totals(
    agreement_id: str = "north-south-2026", partners: tuple[str, str] = PARTNERS, *, points: int = 5_000
) -> dict[str, Any]:
    """The body a node posts (``coordinator_totals``): ``points`` each way at the agreement's rates."""
    a, b = partners
    credited_ab, credited_ba = points * 200 // 250, points * 150 // 250
    owed_ab, owed_ba = Decimal("0.005") * credited_ab, Decimal("0.004") * credited_ba
    net = owed_ab - owed_ba
    payer, payee = ((a, b) if net > 0 else (b, a)) if net else (None, None)
    return {
        "agreement_id": agreement_id,
        "period_start": "2026-03-01T00:00:00+00:00",
        "period_end": "2026-03-31T00:00:00+00:00",
        "currency": "CNY",
        "reconciled": True,
        "directions": [
            {
                "source": a,
                "destination": b,
                "points": points,
                "credited": credited_ab,
                "amount": str(owed_ab),
            },
            {
                "source": b,
                "destination": a,
                "points": points,
                "credited": credited_ba,
                "amount": str(owed_ba),
            },
        ],
        "payer": payer,
        "payee": payee,
        "net_amount": str(abs(net)),
    }


def psi_run_record(partner: str, peer: str, session_id: str, *, shared: int = 420) -> dict[str, Any]:
    """A node's PSI run record (``MatchingRunRecord.as_dict()``): counts only."""
    return {
        "session_id": session_id,
        "role": "initiator",
        "partner": partner,
        "peer": peer,
        "purpose": "loyalty.points_interchange",
        "mode": "intersection",
        "own_set_size": 1_000,
        "peer_set_size": 900,
        "result_cardinality": shared,
        "consent_snapshot_hash": "ab" * 32,
        "at": "2026-03-02T10:00:00+00:00",
        "status": "completed",
        "refusal": None,
        "peer_authentication": "certificate",
        "version": 2,
    }


def subject_request_batch(
    *, erasure_id: str = "erasure-0a1b2c3d4e5f", completed: bool = True
) -> dict[str, Any]:
    """A node's report of its data-subject requests (``protocol.node_reports``): ids, dates, status."""
    erasure: dict[str, Any] = {
        "request_id": erasure_id,
        "kind": "erasure",
        "received_at": "2026-03-01T09:00:00+00:00",
        "deadline": "2026-03-31T09:00:00+00:00",
        "status": "completed" if completed else "open",
        "completed_at": "2026-03-02T09:00:00+00:00" if completed else None,
    }
    access = {
        "request_id": "access-9f8e7d6c5b4a",
        "kind": "access",
        "received_at": "2026-01-05T09:00:00+00:00",
        "deadline": "2026-02-04T09:00:00+00:00",
        "status": "open",
        "completed_at": None,
    }
    return {"version": 1, "requests": [erasure, access]}


def consent_count_report(members: int | None = 1_230) -> dict[str, Any]:
    """A node's coarsened consent counts (multiples of 10, null below k = 20)."""
    return {
        "version": 1,
        "counted_at": "2026-03-02T10:00:00+00:00",
        "granularity": 10,
        "k": 20,
        "counts": [
            {"purpose": "analytics.churn_model", "members": members},
            {"purpose": "analytics.propensity_model", "members": None},
        ],
    }


def job_body(policy_id: str = "churn-2026", epsilon: float = 1.0) -> dict[str, Any]:
    return {"task": "churn", "policy_id": policy_id, "epsilon": epsilon, "delta": 1e-5, "rounds": 2}


@dataclass
class Federation:
    """Tokens for every role, officer signing keys, and shortcuts that call the API as each role."""

    client: TestClient | httpx.Client
    admin: str
    tokens: dict[str, str] = field(default_factory=dict)
    officer_keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who] if who != 'admin' else self.admin}"}

    def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(who) if who else {}
        return self.client.request(method, API + path, headers=headers, **kwargs)

    def issue(self, who: str, role: str, organisation: str) -> str:
        reply = self.call(
            "admin", "POST", "/tokens", json={"name": who, "role": role, "organisation": organisation}
        )
        assert reply.status_code == 201, reply.text
        self.tokens[who] = reply.json()["token"]
        return self.tokens[who]

    def sign(
        self, partner: str, version: dict[str, Any], decision: ApprovalDecision, **kwargs: Any
    ) -> dict[str, str]:
        signed = sign_decision(
            self.officer_keys[partner],
            policy_id=version["policy_id"],
            policy_version=version["version"],
            policy_hash=version["hash"],
            partner_id=partner,
            decision=decision,
            **kwargs,
        )
        return signed.to_dict()

    def sign_agreement(self, partner: str, document: dict[str, Any]) -> dict[str, Any]:
        """``partner``'s officer's signature over the agreement's hash, as the API takes it."""
        signature = sign_agreement(
            parse_agreement(document),
            partner=partner,
            officer=f"officer-{partner}",
            key=self.officer_keys[partner],
            at=datetime.now(UTC),
        )
        return signature.model_dump(mode="json")

    def decide(
        self, partner: str, version: dict[str, Any], decision: ApprovalDecision, **kwargs: Any
    ) -> httpx.Response:
        body = self.sign(partner, version, decision, **kwargs)
        if decision is ApprovalDecision.REJECTED:
            body["reason"] = "the notice does not cover cross-brand modelling"
        path = f"/policies/{version['policy_id']}/versions/{version['version']}/decisions"
        return self.call(f"officer-{partner}", "POST", path, json=body)


def populate(client: TestClient | httpx.Client, admin: str) -> Federation:
    """Two store groups with a data officer (and registered key), a node and an operator each;
    an analyst and an auditor of the federation."""
    federation = Federation(client, admin)
    for partner in PARTNERS:
        body = {"id": partner, "name": partner.title(), "kind": "store_group", "region": "CN"}
        assert federation.call("admin", "POST", "/organisations", json=body).status_code == 201
        federation.issue(f"officer-{partner}", "data_officer", partner)
        federation.issue(f"node-{partner}", "node", partner)
        federation.issue(f"operator-{partner}", "partner_operator", partner)
        key = Ed25519PrivateKey.generate()
        federation.officer_keys[partner] = key
        reply = federation.call(
            f"officer-{partner}", "POST", "/officers/keys", json={"public_key_b64": public_key_b64(key)}
        )
        assert reply.status_code == 201, reply.text
    federation.issue("analyst", "analyst", "federation")
    federation.issue("auditor", "auditor", "federation")
    return federation


@contextmanager
def live_server(settings: CoordinatorSettings) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="coordinator-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the coordinator test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
