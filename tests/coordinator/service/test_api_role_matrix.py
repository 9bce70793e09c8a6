"""Every route × every role: allowed (any answer but 401/403) or 403; another organisation's resource
is 403; no token is 401. The expected table is written out here, independently of the service's own."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.job_runs import begin_run
from coordinator.service import CoordinatorSettings, create_app
from coordinator.store.database import open_store
from policies.approval import ApprovalDecision
from policies.signed_approval import public_key_b64
from tests.coordinator.service.coordinator_federation import (
    PARTNERS,
    Federation,
    agreement_document,
    consent_count_report,
    job_body,
    policy_document,
    populate,
    psi_run_record,
    settlement_totals,
    subject_request_batch,
)

OWN, OTHER = PARTNERS
YEAR = datetime.now(UTC).year
ROLES = ("admin", "officer", "analyst", "auditor", "operator", "node", "run")
READERS = {"admin", "officer", "analyst", "auditor", "operator", "node"}


@dataclass
class World:
    federation: Federation
    job_id: str
    model_id: str
    counter: list[int]
    agreement_hash: str = ""

    def unique(self, stem: str) -> str:
        self.counter[0] += 1
        return f"{stem}-{self.counter[0]}"


def _who(role: str) -> str:
    return {"officer": f"officer-{OWN}", "operator": f"operator-{OWN}", "node": f"node-{OWN}"}.get(role, role)


def _certificate_and_supernode_key() -> tuple[str, str]:
    import tempfile

    from pki.certificate_authority import create_federation_ca, sign_request
    from pki.certificate_request import CertificateRole, build_request

    ca = create_federation_ca(Path(tempfile.mkdtemp()))
    _key, request = build_request(CertificateRole.NODE, partner=OWN)
    certificate = sign_request(
        ca, request.public_bytes(serialization.Encoding.PEM), role=CertificateRole.NODE, partner=OWN
    ).decode()
    supernode = ec.generate_private_key(ec.SECP384R1()).public_key()
    return certificate, supernode.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


Request = tuple[str, str, dict[str, Any]]
ROUTES: dict[str, tuple[Callable[[World, str], Request], set[str]]] = {}


def route(
    name: str, allowed: set[str]
) -> Callable[[Callable[[World, str], Request]], Callable[[World, str], Request]]:
    def register(build: Callable[[World, str], Request]) -> Callable[[World, str], Request]:
        ROUTES[name] = (build, allowed)
        return build

    return register


@route("GET /me", READERS)
def _me(w: World, org: str) -> Request:
    return "GET", "/me", {}


@route("POST /tokens", {"admin"})
def _tokens(w: World, org: str) -> Request:
    return (
        "POST",
        "/tokens",
        {"json": {"name": w.unique("person"), "role": "analyst", "organisation": "federation"}},
    )


@route("POST /organisations", {"admin"})
def _org_create(w: World, org: str) -> Request:
    body = {"id": w.unique("brand"), "name": "Brand", "kind": "brand", "region": "CN"}
    return "POST", "/organisations", {"json": body}


@route("GET /organisations", READERS)
def _orgs(w: World, org: str) -> Request:
    return "GET", "/organisations", {}


@route("POST /officers/keys", {"officer"})
def _officer_key(w: World, org: str) -> Request:
    return (
        "POST",
        "/officers/keys",
        {"json": {"public_key_b64": public_key_b64(Ed25519PrivateKey.generate())}},
    )


CERTIFICATE, SUPERNODE_KEY = _certificate_and_supernode_key()


@route("POST /nodes/register", {"node"})
def _node_register(w: World, org: str) -> Request:
    body = {
        "partner_id": org,
        "version": "1",
        "api_url": "https://127.0.0.1:8800",
        "tls_certificate_pem": CERTIFICATE,
        "supernode_public_key_pem": SUPERNODE_KEY,
    }
    return "POST", "/nodes/register", {"json": body}


@route("POST /nodes/{partner}/heartbeat", {"node"})
def _heartbeat(w: World, org: str) -> Request:
    return "POST", f"/nodes/{org}/heartbeat", {"json": {"version": "1"}}


@route("POST /nodes/{partner}/audit-reset", {"officer"})
def _audit_reset(w: World, org: str) -> Request:
    return "POST", f"/nodes/{org}/audit-reset", {"json": {"reason": "state_lost"}}


@route("GET /nodes", READERS)
def _nodes(w: World, org: str) -> Request:
    return "GET", "/nodes", {}


@route("POST /datasets", {"node"})
def _dataset(w: World, org: str) -> Request:
    tables = {"members": {"columns": ["member_id", "joined_at"], "rows_rounded": 1200}}
    return "POST", "/datasets", {"json": {"partner_id": org, "name": "loyalty", "tables": tables}}


@route("GET /datasets", READERS)
def _datasets(w: World, org: str) -> Request:
    return "GET", "/datasets", {}


@route("POST /policies", {"analyst"})
def _policy_draft(w: World, org: str) -> Request:
    return "POST", "/policies", {"json": {"document": policy_document(w.unique("policy"))}}


for _name, _path in (
    ("GET /policies", "/policies"),
    ("GET /policies/{id}", "/policies/churn-2026"),
    ("GET /policies/{id}/versions/{v}", "/policies/churn-2026/versions/1"),
    ("GET /policies/{id}/diff", "/policies/churn-2026/diff?from=1&to=1"),
    ("GET /policies/{id}/versions/{v}/decisions", "/policies/churn-2026/versions/1/decisions"),
    ("GET /jobs", "/jobs"),
    ("GET /budgets", "/budgets"),
    ("GET /models", "/models"),
):
    route(_name, READERS)(lambda w, org, path=_path: ("GET", path, {}))


@route("POST /policies/{id}/versions/{v}/decisions", {"officer"})
def _decision(w: World, org: str) -> Request:
    version = w.federation.call("auditor", "GET", "/policies/churn-2026/versions/1").json()
    signed = w.federation.sign(org, version, ApprovalDecision.APPROVED)
    return "POST", "/policies/churn-2026/versions/1/decisions", {"json": signed}


@route("POST /jobs", {"analyst"})
def _job_submit(w: World, org: str) -> Request:
    return "POST", "/jobs", {"json": job_body()}


@route("GET /jobs/{id}", READERS)
def _job(w: World, org: str) -> Request:
    return "GET", f"/jobs/{w.job_id}", {}


@route("GET /jobs/{id}/logs", READERS)
def _job_logs(w: World, org: str) -> Request:
    return "GET", f"/jobs/{w.job_id}/logs", {}


@route("POST /jobs/{id}/stop", {"analyst", "admin"})
def _job_stop(w: World, org: str) -> Request:
    # A fresh awaiting job each time, so an allowed stop is a real stop.
    job = w.federation.call("analyst", "POST", "/jobs", json=job_body("draft-only")).json()
    return "POST", f"/jobs/{job['job_id']}/stop", {}


@route("POST /jobs/{id}/progress", {"run"})
def _progress(w: World, org: str) -> Request:
    body = {"round": 1, "nodes_answered": 2, "epsilon_spent": 0.5, "metrics": {"auc": 0.7}}
    return "POST", f"/jobs/{w.job_id}/progress", {"json": body}


@route("POST /jobs/{id}/events", {"run"})
def _events(w: World, org: str) -> Request:
    return "POST", f"/jobs/{w.job_id}/events", {"json": {"kind": "log", "message": "round 1 done"}}


@route("GET /budgets/{partner}/usage", READERS)
def _budget_usage(w: World, org: str) -> Request:
    return "GET", f"/budgets/{org}/usage", {}


@route("PUT /budgets/{partner}/{year}", {"officer"})
def _budget(w: World, org: str) -> Request:
    return "PUT", f"/budgets/{org}/{YEAR}", {"json": {"epsilon_cap": 9.0}}


WEIGHTS = b"model weights" * 10


@route("POST /models", {"run"})
def _model_publish(w: World, org: str) -> Request:
    body = {
        "job_id": w.job_id,
        "card": {"task": "churn"},
        "weights_b64": base64.b64encode(WEIGHTS).decode(),
        "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
    }
    return "POST", "/models", {"json": body}


@route("GET /models/{id}", READERS)
def _model(w: World, org: str) -> Request:
    return "GET", f"/models/{w.model_id}", {}


@route("GET /models/{id}/download", {"analyst", "auditor", "admin"})
def _download(w: World, org: str) -> Request:
    return "GET", f"/models/{w.model_id}/download", {}


@route("GET /audit/head", READERS)
def _audit_head(w: World, org: str) -> Request:
    return "GET", "/audit/head", {}


@route("GET /audit/consistency", READERS)
def _audit_consistency(w: World, org: str) -> Request:
    return "GET", "/audit/consistency", {"params": {"first": 1, "second": 2}}


@route("GET /audit/events", READERS)
def _audit_events(w: World, org: str) -> Request:
    return "GET", "/audit/events", {"params": {"partner": org}}


@route("GET /audit/lineage", READERS)
def _audit_lineage(w: World, org: str) -> Request:
    return "GET", "/audit/lineage", {}


@route("GET /audit/openlineage", READERS)
def _audit_openlineage(w: World, org: str) -> Request:
    return "GET", "/audit/openlineage", {}


@route("GET /audit/anomalies", READERS)
def _audit_anomalies(w: World, org: str) -> Request:
    return "GET", "/audit/anomalies", {}


THIRD = "brand-third"  # a partner outside the two of the world's agreement


def _pair(org: str) -> tuple[str, str]:
    return (OWN, OTHER) if org == OWN else (org, THIRD)


@route("POST /points/agreements", {"officer", "operator"})
def _agreement_draft(w: World, org: str) -> Request:
    return (
        "POST",
        "/points/agreements",
        {"json": {"agreement": agreement_document(w.unique("deal"), _pair(org))}},
    )


@route("GET /points/agreements", READERS)
def _agreements(w: World, org: str) -> Request:
    return "GET", "/points/agreements", {"params": {"pending": "true"}}


@route("GET /points/agreements/{hash}", READERS)
def _agreement(w: World, org: str) -> Request:
    return "GET", f"/points/agreements/{w.agreement_hash}", {}


@route("POST /points/agreements/{hash}/signatures", {"officer"})
def _agreement_sign(w: World, org: str) -> Request:
    # A fresh agreement each time (Ed25519 signatures are deterministic: a repeat would be a replay).
    document = agreement_document(w.unique("deal"), _pair(org))
    drafted = w.federation.call(f"operator-{OWN}", "POST", "/points/agreements", json={"agreement": document})
    assert drafted.status_code == 201, drafted.text
    body = w.federation.sign_agreement(OWN, document)
    return "POST", f"/points/agreements/{drafted.json()['agreement_hash']}/signatures", {"json": body}


@route("POST /points/settlements", {"node"})
def _settlement(w: World, org: str) -> Request:
    return "POST", "/points/settlements", {"json": settlement_totals(w.unique("deal"), _pair(org))}


@route("GET /points/settlements", READERS)
def _settlements(w: World, org: str) -> Request:
    return "GET", "/points/settlements", {}


@route("POST /psi/runs", {"node"})
def _psi_run(w: World, org: str) -> Request:
    return "POST", "/psi/runs", {"json": psi_run_record(org, _pair(org)[1], w.unique("session"))}


@route("GET /psi/runs", READERS)
def _psi_runs(w: World, org: str) -> Request:
    return "GET", "/psi/runs", {}


@route("POST /nodes/{partner}/subject-requests", {"node"})
def _subject_requests_report(w: World, org: str) -> Request:
    return "POST", f"/nodes/{org}/subject-requests", {"json": subject_request_batch()}


@route("GET /subject-requests", {"admin", "officer", "auditor"})
def _subject_requests(w: World, org: str) -> Request:
    return "GET", "/subject-requests", {}


@route("PUT /nodes/{partner}/consent-counts", {"node"})
def _consent_counts_report(w: World, org: str) -> Request:
    return "PUT", f"/nodes/{org}/consent-counts", {"json": consent_count_report()}


@route("GET /consent-counts", READERS - {"node"})
def _consent_counts(w: World, org: str) -> Request:
    return "GET", "/consent-counts", {}


# Routes on a named partner's resources: a principal of the other partner is refused.
ORGANISATION_ROUTES = (
    "POST /nodes/register",
    "POST /nodes/{partner}/heartbeat",
    "POST /nodes/{partner}/audit-reset",
    "POST /datasets",
    "PUT /budgets/{partner}/{year}",
    "POST /points/settlements",
    "POST /psi/runs",
    "POST /nodes/{partner}/subject-requests",
    "PUT /nodes/{partner}/consent-counts",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("matrix") / "state"
    with TestClient(create_app(CoordinatorSettings(state_dir=state, superlink=False))) as client:
        federation = populate(client, (state / "admin.token").read_text().strip())
        version = federation.call("analyst", "POST", "/policies", json={"document": policy_document()}).json()
        federation.call("analyst", "POST", "/policies", json={"document": policy_document("draft-only")})
        for partner in PARTNERS:
            federation.decide(partner, version, ApprovalDecision.APPROVED)
        job_id = federation.call("analyst", "POST", "/jobs", json=job_body()).json()["job_id"]
        engine, sessions = open_store(f"sqlite:///{state / 'coordinator.sqlite'}")
        trail = AuditTrail.open(state.parent / "runner-audit.sqlite")
        with sessions() as session:
            federation.tokens["run"] = begin_run(session, trail, job_id=job_id)
        trail.close()
        engine.dispose()
        model = _model_publish(World(federation, job_id, "", [0]), OWN)[2]["json"]
        model_id = federation.call("run", "POST", "/models", json=model).json()["model_id"]
        drafted = federation.call(
            f"officer-{OWN}", "POST", "/points/agreements", json={"agreement": agreement_document()}
        )
        assert drafted.status_code == 201, drafted.text
        yield World(federation, job_id, model_id, [0], drafted.json()["agreement_hash"])


CELLS = [(name, role) for name in ROUTES for role in ROLES]


@pytest.mark.parametrize(("name", "role"), CELLS, ids=[f"{n} as {r}" for n, r in CELLS])
def test_role_matrix_cell(world: World, name: str, role: str) -> None:
    build, allowed = ROUTES[name]
    method, path, kwargs = build(world, OWN)
    reply = world.federation.call(_who(role), method, path, **kwargs)
    if role in allowed:
        assert reply.status_code not in (401, 403), f"{name} as {role}: {reply.status_code} {reply.text}"
    else:
        assert reply.status_code == 403, f"{name} as {role}: {reply.status_code} {reply.text}"
        assert reply.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_no_token_is_401(world: World, name: str) -> None:
    method, path, kwargs = ROUTES[name][0](world, OWN)
    reply = world.federation.call(None, method, path, **kwargs)
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("name", ORGANISATION_ROUTES)
def test_another_organisations_resource_is_403(world: World, name: str) -> None:
    build, allowed = ROUTES[name]
    (role,) = allowed
    method, path, kwargs = build(world, OTHER)
    reply = world.federation.call(_who(role), method, path, **kwargs)
    assert reply.status_code == 403, reply.text


def test_an_officer_cannot_sign_for_another_partner(world: World) -> None:
    version = world.federation.call("auditor", "GET", "/policies/churn-2026/versions/1").json()
    signed = world.federation.sign(OTHER, version, ApprovalDecision.APPROVED)
    path = "/policies/churn-2026/versions/1/decisions"
    reply = world.federation.call(f"officer-{OWN}", "POST", path, json=signed)
    assert reply.status_code == 403


def test_a_run_token_reports_only_on_its_own_job(world: World) -> None:
    other = world.federation.call("analyst", "POST", "/jobs", json=job_body()).json()["job_id"]
    reply = world.federation.call(
        "run", "POST", f"/jobs/{other}/events", json={"kind": "log", "message": "x"}
    )
    assert reply.status_code == 403


def test_every_route_of_the_api_is_in_the_matrix(world: World) -> None:
    paths = world.federation.client.get("/openapi.json").json()["paths"]
    served = {
        f"{method.upper()} {path.removeprefix('/api/v1')}" for path, ops in paths.items() for method in ops
    }
    named = {
        name.replace("{partner}", "{partner_id}")
        .replace("{id}", "{x}")
        .replace("{hash}", "{x}")
        .replace("{v}", "{version}")
        for name in ROUTES
    } | {"GET /health"}
    normalised = {
        s.replace("{policy_id}", "{x}")
        .replace("{job_id}", "{x}")
        .replace("{model_id}", "{x}")
        .replace("{agreement_hash}", "{x}")
        for s in served
    }
    assert normalised == named


def test_an_officer_cannot_sign_an_agreement_for_another_partner(world: World) -> None:
    document = agreement_document(world.unique("deal"))
    drafted = world.federation.call(
        f"officer-{OWN}", "POST", "/points/agreements", json={"agreement": document}
    )
    path = f"/points/agreements/{drafted.json()['agreement_hash']}/signatures"
    as_other = world.federation.sign_agreement(OTHER, document)  # OTHER's officer key, sent by OWN's officer
    reply = world.federation.call(f"officer-{OWN}", "POST", path, json=as_other)
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "signature_rejected"
    outsiders = agreement_document(world.unique("deal"), (OTHER, THIRD))
    world.federation.call(
        "admin", "POST", "/organisations", json={"id": THIRD, "name": "T", "kind": "brand", "region": "CN"}
    )
    drafted = world.federation.call(
        f"officer-{OTHER}", "POST", "/points/agreements", json={"agreement": outsiders}
    )
    assert drafted.status_code == 201, drafted.text
    path = f"/points/agreements/{drafted.json()['agreement_hash']}"
    assert world.federation.call(f"operator-{OWN}", "GET", path).status_code == 404  # not a party
    signed = world.federation.sign_agreement(OWN, document)
    reply = world.federation.call(f"officer-{OWN}", "POST", path + "/signatures", json=signed)
    assert reply.status_code == 403
