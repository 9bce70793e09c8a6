"""The node's PSI API fails closed: a 4xx that never echoes the body, sessions that never reopen,
aborted runs recorded as aborted; schemathesis over its whole OpenAPI finds no 500."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from test_matching_service import Clock, _client, _service

from participant_node.matching.run_record import RunStatus
from participant_node.matching.service import create_matching_app
from policies.purpose import Purpose
from psi.wire import PsiMode, Reveal

PHONE = "+86 138 0013 8000"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _opening(session_id: str = "ab" * 16, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "session_id": session_id,
        "initiator_partner": "freshmart",
        "purpose": str(Purpose.CROSS_BRAND_MATCHING),
        "mode": "cardinality",
        "initiator_size": 50,
        "chunk_size": 64,
    }
    return body | changes


def test_malformed_openings_are_422_and_never_echoed(serve, client_tls, clock, tmp_path: Path) -> None:
    records: list = []
    careplus = _service("careplus", 0, 50, records=records, clock=clock, tmp=tmp_path)
    base = serve(create_matching_app(careplus))
    bodies = [
        json.dumps(_opening(initiator_size=float("nan")), allow_nan=True),  # NaN was a 500
        json.dumps(_opening(chunk_size=float("inf")), allow_nan=True),
        json.dumps(_opening(initiator_size=2**70)),
        json.dumps(_opening(initiator_partner=PHONE, session_id=PHONE)),
        json.dumps(_opening(**{PHONE: 1})),
        '{"session_id": ',
    ]
    with httpx.Client(base_url=base, verify=client_tls, timeout=10) as http:
        for body in bodies:
            response = http.post(
                "/psi/v1/sessions", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422, (body, response.text)
            assert PHONE not in response.text and "138" not in response.text and "NaN" not in response.text
            assert response.json()["detail"] == "invalid request"
            assert all(set(error) == {"loc", "type", "msg"} for error in response.json()["errors"])
    assert len(careplus.sessions) == 0 and records == []


def test_a_closed_session_cannot_be_reopened(serve, client_tls, clock, tmp_path: Path) -> None:
    records: list = []
    careplus = _service("careplus", 0, 100, records=records, clock=clock, tmp=tmp_path)
    freshmart = _service("freshmart", 0, 100, records=[], clock=clock, tmp=tmp_path)
    client = _client(serve(create_matching_app(careplus)), client_tls)
    run = freshmart.initiate(client, peer="careplus", mode=PsiMode.CARDINALITY)
    assert run.result.cardinality == 100 and records[-1].status == RunStatus.COMPLETED
    used = records[-1].session_id
    response = client.http.post("/psi/v1/sessions", json=_opening(used))
    assert response.status_code == 409 and "cannot be reopened" in response.json()["error"]
    assert len(careplus.sessions) == 0 and len(records) == 1  # nothing opened, nothing counted


def test_a_session_closed_early_is_recorded_as_aborted(serve, client_tls, clock, tmp_path: Path) -> None:
    records: list = []
    careplus = _service("careplus", 0, 100, records=records, clock=clock, tmp=tmp_path)
    client = _client(serve(create_matching_app(careplus)), client_tls)
    params = client.open(
        size=50,
        purpose=Purpose.CROSS_BRAND_MATCHING,
        mode=PsiMode.INTERSECTION,
        reveal=Reveal.INITIATOR,
        chunk_size=64,
    )
    assert client.http.delete(f"/psi/v1/sessions/{params.session_id}").status_code == 204
    assert records[-1].status == RunStatus.ABORTED and records[-1].result_cardinality is None
    assert client.http.post("/psi/v1/sessions", json=_opening(params.session_id)).status_code == 409


def test_a_protocol_error_aborts_the_session(serve, client_tls, clock, tmp_path: Path) -> None:
    records: list = []
    careplus = _service("careplus", 0, 100, records=records, clock=clock, tmp=tmp_path)
    client = _client(serve(create_matching_app(careplus)), client_tls)
    params = client.open(
        size=50,
        purpose=Purpose.CROSS_BRAND_MATCHING,
        mode=PsiMode.INTERSECTION,
        reveal=Reveal.INITIATOR,
        chunk_size=64,
    )
    garbage = client.http.put(f"/psi/v1/sessions/{params.session_id}/frames", content=b"\x00" * 40)
    assert garbage.status_code == 400
    assert records[-1].status == RunStatus.ABORTED and len(careplus.sessions) == 0
    again = client.http.get(f"/psi/v1/sessions/{params.session_id}/frames/2/0")
    assert again.status_code == 404


def test_no_500_anywhere_in_the_openapi(
    pki, clock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Generated requests (valid and invalid) from a peer with a valid certificate, over the node's
    whole API (``create_node_api``: health and the PSI responder with its state on disk): never a 500."""
    from test_sessions_across_restart import _careplus

    from participant_node.service.node_api import create_node_api
    from participant_node.service.node_audit import NodeAudit
    from tests.openapi_fuzz import fuzz_app

    data, state = _careplus(tmp_path / "careplus"), tmp_path / "careplus-state"
    state.mkdir(mode=0o700)
    audit = NodeAudit(state, "careplus")
    app = create_node_api(
        partner_id="careplus", data=lambda: data, matching_secret=b"s" * 32, state=state, audit=audit,
        region="CN", version="0.1.0",
    )  # fmt: skip
    certificate = pki.certificate("freshmart").read_text()

    async def as_freshmart(scope, receive, send):  # what tls_scope adds on a verified mTLS connection
        if scope["type"] == "http":
            scope = {**scope, "extensions": {"tls": {"client_cert_chain": [certificate]}}}
        await app(scope, receive, send)

    examples = int(os.environ.get("LOYALFED_FUZZ_EXAMPLES", "8"))
    report = fuzz_app(app, headers=[{}], max_examples=examples, asgi_app=as_freshmart)
    with capsys.disabled():
        statuses = dict(sorted(report.statuses.items()))
        print(f"\nnode API fuzz: {report.requests} requests, statuses {statuses}")
    audit.close()
    assert report.server_errors == [] and report.requests > 4 * examples
