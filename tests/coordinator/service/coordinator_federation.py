"""A federation of principals (every role, officer signing keys) calling a coordinator API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from coordinator.service import CoordinatorSettings, create_app
from coordinator.superlink_supervisor import free_port
from policies.approval import ApprovalDecision
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
