"""The audit service fails closed: 4xx (never 500) on malformed requests, no echo of the body,
scoped reads, a health endpoint, HTTPS with a federation-CA certificate; schemathesis over the
whole OpenAPI finds no 500."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from audit.audit_client import AuditClient
from audit.audit_log import AuditLog
from audit.audit_service import ClientGrant, ClientRole, ServiceConfig, create_app, token_digest
from audit.tree_head import TreeHeadSigner

TOKENS = {"coordinator": "tok-coordinator", "careplus": "tok-careplus", "auditor": "tok-auditor"}
GRANTS = {
    "coordinator": {"role": ClientRole.COORDINATOR, "actor": "coordinator", "may_append": True},
    "careplus": {
        "role": ClientRole.PARTNER,
        "actor": "node-careplus",
        "partner": "careplus",
        "may_append": True,
    },
    "auditor": {"role": ClientRole.AUDITOR, "actor": "auditor"},
}
CONFIG = ServiceConfig(
    clients=tuple(
        ClientGrant(client_id=who, token_sha256=token_digest(TOKENS[who]), **grant)
        for who, grant in GRANTS.items()
    )
)
PHONE = "+86 138 0013 8000"


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@pytest.fixture
def empty_app(tmp_path: Path, signer: TreeHeadSigner) -> Iterator[FastAPI]:
    with AuditLog.open(tmp_path / "audit.sqlite", signer=signer) as log:
        yield create_app(log, CONFIG)


@pytest.fixture
def app(empty_app: FastAPI, flow: Callable) -> FastAPI:
    empty_app.state.log.append_batch(flow())
    return empty_app


def test_reads_on_an_empty_log_are_answered(empty_app: FastAPI) -> None:
    with TestClient(empty_app) as client:
        for path in ("/v1/tree-head", "/v1/events", "/v1/public-key", "/health"):
            response = client.get(path, headers=auth("auditor"))
            assert response.status_code == 200, path
            assert json.loads(response.headers["X-Audit-Tree-Head"])["tree_size"] == 0
        assert client.get("/v1/lineage/m-1", headers=auth("auditor")).status_code == 400
        assert client.get(
            "/v1/proofs/consistency", params={"old_size": 0}, headers=auth("auditor")
        ).json() == {
            "tree_size": 0,
            "proof": [],
            "leaf_hash": None,
        }


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/tree-head", {"tree_size": 2**63}),  # beyond int64
        ("/v1/tree-head", {"tree_size": 10**30}),
        ("/v1/proofs/inclusion", {"seq": 2**64}),
        ("/v1/proofs/consistency", {"old_size": 2**70, "new_size": 1}),
        ("/v1/proofs/consistency", {"old_size": -1}),
        ("/v1/events", {"limit": 2**63}),
        ("/v1/events", {"since": "2026-03-01T09:10:00"}),  # naive: refused, never compared with aware
        ("/v1/events", {"until": "0001-01-01T00:00:00"}),
    ],
)
def test_out_of_range_queries_are_422(app: FastAPI, path: str, params: dict[str, object]) -> None:
    with TestClient(app) as client:
        response = client.get(path, params=params, headers=auth("auditor"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "invalid request"


def test_old_size_above_new_size_is_400(app: FastAPI) -> None:
    with TestClient(app) as client:
        response = client.get(
            "/v1/proofs/consistency", params={"old_size": 12, "new_size": 3}, headers=auth("auditor")
        )
    assert response.status_code == 400 and "smaller size 3" in response.json()["detail"]


def test_aware_dates_of_any_offset_filter_correctly(app: FastAPI) -> None:
    with TestClient(app) as client:
        utc = client.get("/v1/events", params={"since": "2026-03-01T09:10:00Z"}, headers=auth("auditor"))
        shanghai = client.get(
            "/v1/events", params={"since": "2026-03-01T17:10:00+08:00"}, headers=auth("auditor")
        )
    assert utc.status_code == shanghai.status_code == 200 and len(utc.json()) == len(shanghai.json()) == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_in_a_body_are_422_without_echo(app: FastAPI, flow: Callable, bad: float) -> None:
    event = flow()[9].model_copy(update={"actor": "node-careplus"}).model_dump(mode="json")
    for field in ("epsilon", "delta"):
        body = json.dumps({"events": [{**event, field: bad, "partner": "careplus"}]}, allow_nan=True)
        with TestClient(app) as client:
            response = client.post(
                "/v1/events", content=body, headers={**auth("careplus"), "Content-Type": "application/json"}
            )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == f"body.events.0.{field}"
    assert app.state.log.size == 13


def test_a_refused_body_is_never_echoed(app: FastAPI, flow: Callable) -> None:
    event = flow()[4].model_copy(update={"actor": "node-careplus"}).model_dump(mode="json")
    bodies = [
        {"events": [{**event, "details": {"who": PHONE}}]},
        {"events": [{**event, "details": {PHONE: 1}}]},  # a client-chosen key, masked in the location
        {"events": [{**event, "actor": "shopper@example.com"}]},
        {"events": [{**event, "unexpected": PHONE}]},
        {"events": [{**event, "time": "2026-03-01T09:00:00"}], "extra": PHONE},
    ]
    with TestClient(app) as client:
        for body in bodies:
            response = client.post("/v1/events", json=body, headers=auth("careplus"))
            assert response.status_code == 422
            assert PHONE not in response.text and "example.com" not in response.text
            assert "138" not in response.text and "input" not in response.json()
        broken = client.post("/v1/events", content=b'{"events": [', headers=auth("careplus"))
        assert broken.status_code == 422 and broken.json()["detail"] == "invalid request"


def test_reads_are_scoped_by_role(app: FastAPI, flow: Callable) -> None:
    log: AuditLog = app.state.log
    log.append_batch([e.model_copy(update={"partners": ("fuelgo",)}) for e in flow(job="job-f")[:1]])
    with TestClient(app) as client:
        every = client.get("/v1/events", headers=auth("auditor")).json()
        mine = client.get("/v1/events", headers=auth("careplus")).json()
        theirs = client.get(
            "/v1/events", params={"partner": "freshmart-north"}, headers=auth("careplus")
        ).json()
        by_coordinator = client.get("/v1/events", headers=auth("coordinator")).json()
        lineage = client.get("/v1/lineage/model-1", headers=auth("careplus")).json()
    assert len(every) == 14
    assert mine and all("careplus" in json.dumps(item["event"]) for item in mine) and len(mine) < len(every)
    assert not any("fuelgo" in json.dumps(item["event"]) for item in mine)
    assert theirs and all("careplus" in json.dumps(item["event"]) for item in theirs)  # shared events only
    assert by_coordinator and {item["event"]["actor"] for item in by_coordinator} == {"coordinator"}
    assert "partner:freshmart-north" not in {n["id"] for n in lineage.get("nodes", [])}


def test_health_needs_no_token(app: FastAPI) -> None:
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok", "tree_size": 13}


def test_served_over_https_with_a_federation_ca_certificate(
    tmp_path: Path, signer: TreeHeadSigner, flow: Callable
) -> None:
    from test_audit_service import LoopbackServer

    from participant_node.matching.federation_pki import issue_federation_ca, issue_server_certificate

    now = datetime.now(UTC)
    ca = issue_federation_ca(now=now, days=1)
    ca.write(tmp_path / "pki", "ca", suffix=".crt")
    issue_server_certificate(ca, ["127.0.0.1"], now=now, days=1).write(tmp_path / "pki", "audit")
    tls = {
        "ssl_certfile": str(tmp_path / "pki" / "audit.pem"),
        "ssl_keyfile": str(tmp_path / "pki" / "audit.key"),
    }
    log = AuditLog.open(tmp_path / "audit.sqlite", signer=signer)
    with LoopbackServer(create_app(log, CONFIG), **tls) as server:
        assert server.url.startswith("https://")
        mine = [e.model_copy(update={"actor": "node-careplus"}) for e in flow()[3:5]]
        ca_file = str(tmp_path / "pki" / "ca.crt")
        with AuditClient(server.url, TOKENS["careplus"], signer.public_key, verify=ca_file) as node:
            assert node.append(mine) == [0, 1]
            assert node.monitor.latest is not None and node.monitor.latest.tree_size == 2
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA refuses
            httpx.get(f"{server.url}/health", timeout=5)
    log.close()


def test_no_500_anywhere_in_the_openapi(app: FastAPI, capsys: pytest.CaptureFixture[str]) -> None:
    """Generated requests (valid and invalid, 8 + 8 per operation) as a partner and as the auditor:
    never a 500, and a 422 never echoes what was sent."""
    from tests.openapi_fuzz import fuzz_app

    def no_echo(case: schemathesis.Case, response: object) -> None:
        text = getattr(response, "text", "")
        if getattr(response, "status_code", 0) == 422:
            assert "input" not in json.loads(text), text

    examples = int(os.environ.get("LOYALFED_FUZZ_EXAMPLES", "8"))  # CI budget; raise it for a deep run
    report = fuzz_app(app, headers=[auth("careplus"), auth("auditor")], max_examples=examples, check=no_echo)
    with capsys.disabled():
        statuses = dict(sorted(report.statuses.items()))
        print(f"\naudit service fuzz: {report.requests} requests, statuses {statuses}")
    assert report.server_errors == [] and report.requests > 20 * examples
