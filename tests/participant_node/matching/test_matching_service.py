"""The node-to-node PSI protocol over real HTTPS (mTLS) on loopback."""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

# Submodule imports: tests/ is on sys.path and its participant_node/ folder shadows the package name.
from participant_node.matching.client import MatchingClient
from participant_node.matching.config import MatchingConfig
from participant_node.matching.errors import MatchingRefused, SessionGone
from participant_node.matching.member_set import matching_set_from_frames
from participant_node.matching.probing_guard import ProbingGuard
from participant_node.matching.service import MatchingService, create_matching_app
from policies.purpose import Purpose
from psi.group_engine import GroupEngine
from psi.hash_to_curve import hash_to_ristretto255
from psi.wire import MessageKind, PsiMode, Reveal

SECRET = b"federation-matching-secret-0001"
AT = datetime(2024, 6, 1, 12, 0)


def _frames(first: int, count: int, *, consent_every: int = 1) -> tuple:
    """Members ``first..first+count`` (phones shared across partners), consent on every k-th."""
    ids = range(first, first + count)
    members = pd.DataFrame(
        {
            "member_id": [f"m{first}-{i}" for i in ids],  # member ids differ between partners
            "phone": [f"+1 415 555 {i:04d}" for i in ids],
            "joined_at": pd.to_datetime(["2024-01-01"] * len(ids)),
            "points_balance": [float(i % 50) for i in ids],
        }
    )
    chosen = [i for i in ids if i % consent_every == 0]
    consents = pd.DataFrame(
        {
            "member_id": [f"m{first}-{i}" for i in chosen],
            "purpose": ["marketing.cross_brand_matching"] * len(chosen),
            "granted_at": pd.to_datetime(["2024-01-01"] * len(chosen)),
            "scope": ["federation"] * len(chosen),
        }
    )
    return members, consents


class Clock:
    def __init__(self) -> None:
        self.now = AT

    def __call__(self) -> datetime:
        return self.now


def _service(partner: str, first: int, count: int, *, records: list, clock: Clock, tmp: Path, **config):
    members, consents = _frames(first, count, consent_every=config.pop("consent_every", 1))

    def provider(purpose: Purpose, peer: str):
        return matching_set_from_frames(
            tmp / partner,
            members,
            consents,
            purpose=purpose,
            recipient=peer,
            at=clock(),
            id_column="phone",
            secret=SECRET,
        )

    settings = MatchingConfig(
        partner_id=partner, min_set_size=10, chunk_size=64, paillier_bits=1024, **config
    )
    guard = ProbingGuard(":memory:", settings)
    return MatchingService(settings, set_provider=provider, guard=guard, on_run=records.append, now=clock)


class CapturingTransport(httpx.HTTPTransport):
    """Records every byte of every request and response body; can drop the first responses."""

    def __init__(self, *, drop_first_puts: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.drop = drop_first_puts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(bytes(request.url.raw_path) + request.content)
        response = super().handle_request(request)
        response.read()
        self.received.append(response.content)
        if request.method == "PUT" and self.drop > 0:
            self.drop -= 1  # the peer processed the chunk but the answer is lost: retry must resume
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def _client(
    base_url: str, tls: ssl.SSLContext, transport: httpx.HTTPTransport | None = None
) -> MatchingClient:
    transport = transport or httpx.HTTPTransport(verify=tls)
    http = httpx.Client(base_url=base_url, transport=transport, timeout=10.0)
    return MatchingClient(http, partner_id="freshmart", backoff_s=0.01)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_match_over_mtls_uses_consented_members_and_leaks_nothing(serve, client_tls, clock, tmp_path) -> None:
    records: list = []
    careplus = _service("careplus", 100, 300, records=records, clock=clock, tmp=tmp_path, consent_every=2)
    freshmart = _service("freshmart", 0, 250, records=records, clock=clock, tmp=tmp_path)
    base = serve(create_matching_app(careplus))
    transport = CapturingTransport(verify=client_tls, drop_first_puts=2)
    run = freshmart.initiate(_client(base, client_tls, transport), peer="careplus")
    # Shared phones are 100..249; careplus only offers members with consent (every second one).
    expected = {f"m0-{i}" for i in range(100, 250) if i % 2 == 0}
    assert set(run.matched_member_ids) == expected and run.result.cardinality == len(expected)
    assert [r.role for r in records] == ["responder", "initiator"]
    assert records[0].own_set_size == 150 and records[0].status == "completed"
    assert "m0-" not in str(records[0].as_dict()) and "+1" not in str(records[1].lineage_fields())

    wire = b"".join(transport.sent + transport.received)
    members, _ = _frames(0, 400)
    keyed = freshmart._set_provider(Purpose.CROSS_BRAND_MATCHING, "careplus").items
    leaks = [p.encode() for p in members["phone"]] + [f"m0-{i}".encode() for i in range(250)]
    leaks += [p.replace(" ", "").encode() for p in members["phone"]] + keyed
    leaks += [hash_to_ristretto255(item) for item in keyed]
    assert not [x for x in leaks if x in wire]


def test_cardinality_and_sum_modes_over_http(serve, client_tls, clock, tmp_path) -> None:
    records: list = []
    careplus = _service("careplus", 50, 100, records=records, clock=clock, tmp=tmp_path)
    freshmart = _service("freshmart", 0, 100, records=records, clock=clock, tmp=tmp_path)
    client = _client(serve(create_matching_app(careplus)), client_tls)
    card = freshmart.initiate(client, peer="careplus", mode=PsiMode.CARDINALITY)
    assert card.result.cardinality == 50 and card.matched_member_ids == []
    both = freshmart.initiate(client, peer="careplus", reveal=Reveal.BOTH)
    assert both.result.cardinality == 50 and records[-2].result_cardinality == 50
    summed = freshmart.initiate(client, peer="careplus", mode=PsiMode.SUM)
    assert summed.result.cardinality == 50
    assert records[-2].mode == "sum"


def test_probing_guards_refuse_small_frequent_and_mostly_new_sets(serve, client_tls, clock, tmp_path) -> None:
    records: list = []
    careplus = _service(
        "careplus", 0, 200, records=records, clock=clock, tmp=tmp_path, max_runs_per_pair_per_day=3
    )
    client = _client(serve(create_matching_app(careplus)), client_tls)
    tiny = _service("freshmart", 0, 5, records=records, clock=clock, tmp=tmp_path)
    with pytest.raises(MatchingRefused, match="below the minimum of 10"):
        tiny.initiate(client, peer="careplus")
    freshmart = _service("freshmart", 0, 100, records=records, clock=clock, tmp=tmp_path)
    freshmart.initiate(client, peer="careplus")
    shifted = _service("freshmart", 80, 100, records=records, clock=clock, tmp=tmp_path)
    shifted.guard = freshmart.guard  # the same node a little later: 80% of its set is new
    with pytest.raises(MatchingRefused, match="80% of the set is new"):
        shifted.initiate(client, peer="careplus")  # opened at the peer, then refused: counts as a run
    freshmart.initiate(client, peer="careplus")
    with pytest.raises(MatchingRefused, match="3 runs in the last 24 h"):
        freshmart.initiate(client, peer="careplus")
    clock.now += timedelta(days=1, minutes=1)
    assert freshmart.initiate(client, peer="careplus").result.cardinality == 100


def test_sessions_time_out_and_are_recorded_as_expired(serve, client_tls, clock, tmp_path) -> None:
    records: list = []
    careplus = _service("careplus", 0, 50, records=records, clock=clock, tmp=tmp_path, session_timeout_s=30)
    client = _client(serve(create_matching_app(careplus)), client_tls)
    params = client.open(
        size=50,
        purpose=Purpose.CROSS_BRAND_MATCHING,
        mode=PsiMode.INTERSECTION,
        reveal=Reveal.INITIATOR,
        chunk_size=64,
    )
    clock.now += timedelta(seconds=31)
    with pytest.raises(SessionGone, match="timed out"):
        client._fetch(params, MessageKind.RESPONDER_ELEMENTS, 1)
    assert records[-1].status == "expired" and records[-1].result_cardinality is None


def test_peers_without_a_client_certificate_are_refused(serve, pki, clock, tmp_path) -> None:
    careplus = _service("careplus", 0, 50, records=[], clock=clock, tmp=tmp_path)
    base = serve(create_matching_app(careplus))
    no_cert = ssl.create_default_context(cafile=str(pki.ca))
    with pytest.raises(httpx.HTTPError), httpx.Client(base_url=base, verify=no_cert) as http:
        http.post("/psi/v1/sessions", json={})


def test_protocol_errors_come_back_as_typed_public_messages(serve, client_tls, clock, tmp_path) -> None:
    careplus = _service("careplus", 0, 50, records=[], clock=clock, tmp=tmp_path)
    client = _client(serve(create_matching_app(careplus)), client_tls)
    params = client.open(
        size=50,
        purpose=Purpose.CROSS_BRAND_MATCHING,
        mode=PsiMode.INTERSECTION,
        reveal=Reveal.INITIATOR,
        chunk_size=64,
    )
    from psi.protocol import Initiator

    with GroupEngine(1) as engine:
        frame = next(
            iter(Initiator([bytes([i]) * 4 for i in range(50)], params, engine=engine).element_frames())
        )
    forged = type(frame)(frame.kind, frame.session, 0, frame.chunks, 32, b"\xff" * 32 + frame.payload[32:])
    response = client.http.put(f"/psi/v1/sessions/{params.session_id}/frames", content=forged.encode())
    assert response.status_code == 400
    assert response.json()["error"].startswith(
        "invalid element in message 'INITIATOR_ELEMENTS', chunk 0, element 0"
    )


def test_unknown_partners_and_non_matching_purposes_are_refused(serve, client_tls, clock, tmp_path) -> None:
    careplus = _service(
        "careplus", 0, 50, records=[], clock=clock, tmp=tmp_path, allowed_peers=frozenset({"fuelgo"})
    )
    client = _client(serve(create_matching_app(careplus)), client_tls)
    with pytest.raises(MatchingRefused, match="partner freshmart is not allowed"):
        client.open(
            size=50,
            purpose=Purpose.CROSS_BRAND_MATCHING,
            mode=PsiMode.CARDINALITY,
            reveal=Reveal.INITIATOR,
            chunk_size=64,
        )
    with pytest.raises(MatchingRefused, match="does not allow matching"):
        client.open(
            size=50,
            purpose=Purpose.CHURN_MODEL,
            mode=PsiMode.CARDINALITY,
            reveal=Reveal.INITIATOR,
            chunk_size=64,
        )
