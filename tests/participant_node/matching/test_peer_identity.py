"""The node takes its peer's partner id from the verified mTLS client certificate, not the body."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_matching_service import Clock, _service

from audit.lineage_event import LineageEvent
from participant_node.matching.client import MatchingClient
from participant_node.matching.errors import MatchingRefused
from participant_node.matching.peer_identity import (
    PeerAuthentication,
    PeerIdentityRefused,
    authenticate_peer,
    partner_from_certificate,
    partner_uri,
)
from participant_node.matching.service import create_matching_app
from policies.purpose import Purpose
from psi.wire import MessageKind, PsiMode, Reveal


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _as(pki, base_url: str, *, cert: str, claims: str) -> MatchingClient:
    """A node presenting ``cert``'s certificate and announcing itself as ``claims``."""
    http = httpx.Client(base_url=base_url, verify=pki.client_context(cert), timeout=10.0)
    return MatchingClient(http, partner_id=claims, backoff_s=0.01)


def _open(client: MatchingClient) -> None:
    client.open(
        size=100, purpose=Purpose.CROSS_BRAND_MATCHING, mode=PsiMode.CARDINALITY, reveal=Reveal.INITIATOR,
        chunk_size=64,
    )  # fmt: skip


def _assert_auditable(record) -> None:
    LineageEvent.from_record(
        {"event_type": "psi.run", **record.lineage_fields()}, now=datetime.now(UTC), actor="careplus"
    )
    assert "+1" not in str(record.as_dict()) and "m0-" not in str(record.as_dict())


def test_a_certificate_of_one_partner_cannot_claim_another(serve, pki, clock, tmp_path) -> None:
    records: list = []
    careplus = _service("careplus", 0, 200, records=records, clock=clock, tmp=tmp_path)
    base = serve(create_matching_app(careplus))
    impostor = _as(pki, base, cert="fuelgo", claims="freshmart")
    response = impostor.http.post(
        "/psi/v1/sessions",
        json={
            "session_id": "ab" * 16,
            "initiator_partner": "freshmart",
            "purpose": str(Purpose.CROSS_BRAND_MATCHING),
            "mode": "cardinality",
            "initiator_size": 100,
            "chunk_size": 64,
        },
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": "the client certificate identifies partner fuelgo, but the request claims freshmart",
        "type": "PeerIdentityRefused",
    }
    [record] = records
    assert (record.status, record.refusal, record.peer) == ("refused", "peer_identity", "fuelgo")
    assert record.peer_authentication is None and record.own_set_size is None
    assert len(careplus.sessions) == 0
    _assert_auditable(record)


def test_daily_caps_count_per_certificate_identity(serve, pki, clock, tmp_path) -> None:
    records: list = []
    careplus = _service(
        "careplus", 0, 200, records=records, clock=clock, tmp=tmp_path, max_runs_per_pair_per_day=2
    )
    base = serve(create_matching_app(careplus))
    freshmart = _service("freshmart", 0, 100, records=[], clock=clock, tmp=tmp_path)
    honest = _as(pki, base, cert="freshmart", claims="freshmart")
    for _ in range(2):
        assert freshmart.initiate(honest, peer="careplus", mode=PsiMode.CARDINALITY).result.cardinality == 100
    with pytest.raises(MatchingRefused, match="2 runs in the last 24 h"):
        freshmart.initiate(honest, peer="careplus", mode=PsiMode.CARDINALITY)
    # Capped, freshmart borrows fuelgo's name: its certificate still says freshmart.
    with pytest.raises(MatchingRefused, match="identifies partner freshmart, but the request claims fuelgo"):
        _open(_as(pki, base, cert="freshmart", claims="fuelgo"))
    # fuelgo's own runs count against fuelgo's cap, not freshmart's.
    fuelgo = _service("fuelgo", 50, 100, records=[], clock=clock, tmp=tmp_path)
    as_fuelgo = _as(pki, base, cert="fuelgo", claims="fuelgo")
    for _ in range(2):
        assert fuelgo.initiate(as_fuelgo, peer="careplus", mode=PsiMode.CARDINALITY).result.cardinality == 100
    with pytest.raises(MatchingRefused, match="2 runs in the last 24 h"):
        fuelgo.initiate(as_fuelgo, peer="careplus", mode=PsiMode.CARDINALITY)
    refused = [(r.peer, r.refusal, r.peer_authentication) for r in records if r.status == "refused"]
    assert refused == [
        ("freshmart", "runs_per_day", "certificate"),
        ("freshmart", "peer_identity", None),
        ("fuelgo", "runs_per_day", "certificate"),
    ]
    completed = [r for r in records if r.status == "completed"]
    assert [r.peer for r in completed] == ["freshmart"] * 2 + ["fuelgo"] * 2
    assert {r.peer_authentication for r in completed} == {"certificate"}
    for record in records:
        _assert_auditable(record)


def test_a_session_answers_only_the_partner_that_opened_it(serve, pki, clock, tmp_path) -> None:
    careplus = _service("careplus", 0, 200, records=[], clock=clock, tmp=tmp_path)
    base = serve(create_matching_app(careplus))
    owner = _as(pki, base, cert="freshmart", claims="freshmart")
    params = owner.open(
        size=100, purpose=Purpose.CROSS_BRAND_MATCHING, mode=PsiMode.INTERSECTION, reveal=Reveal.INITIATOR,
        chunk_size=64,
    )  # fmt: skip
    other = _as(pki, base, cert="fuelgo", claims="fuelgo")
    for response in (
        other.http.get(
            f"/psi/v1/sessions/{params.session_id}/frames/{int(MessageKind.RESPONDER_ELEMENTS)}/0"
        ),
        other.http.delete(f"/psi/v1/sessions/{params.session_id}"),
    ):
        assert response.status_code == 403 and response.json()["type"] == "PeerIdentityRefused"
    assert len(careplus.sessions) == 1
    assert (
        owner.http.get(
            f"/psi/v1/sessions/{params.session_id}/frames/{int(MessageKind.RESPONDER_ELEMENTS)}/0"
        ).status_code
        == 200
    )


def test_plain_http_is_refused_by_default(serve, clock, tmp_path) -> None:
    records: list = []
    node = _service("careplus", 0, 200, records=records, clock=clock, tmp=tmp_path)
    assert node.config.peer_authentication == PeerAuthentication.CERTIFICATE
    base = serve(create_matching_app(node), tls=False)
    freshmart = _service("freshmart", 0, 100, records=[], clock=clock, tmp=tmp_path)
    with pytest.raises(MatchingRefused, match="only over mutually authenticated TLS"):
        freshmart.initiate(
            MatchingClient(httpx.Client(base_url=base), partner_id="freshmart"), peer="careplus"
        )
    # Refused and recorded without a peer identity: a declared id over plain HTTP is not one.
    assert [(r.status, r.peer, r.refusal) for r in records] == [
        ("refused", "unauthenticated", "peer_identity")
    ]
    assert len(node.sessions) == 0


def test_loopback_plain_http_is_an_explicit_opt_in(serve, clock, tmp_path) -> None:
    records: list = []
    development = _service(
        "careplus", 0, 200, records=records, clock=clock, tmp=tmp_path,
        peer_authentication=PeerAuthentication.CERTIFICATE_OR_LOOPBACK,
    )  # fmt: skip
    base = serve(create_matching_app(development), tls=False)
    freshmart = _service("freshmart", 0, 100, records=[], clock=clock, tmp=tmp_path)
    run = freshmart.initiate(
        MatchingClient(httpx.Client(base_url=base), partner_id="freshmart"), peer="careplus"
    )
    assert run.result.cardinality == 100
    assert (records[-1].peer, records[-1].peer_authentication) == ("freshmart", "loopback-declared")


def _certificate(uris: list[str]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "freshmart")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
    )  # fmt: skip
    if uris:
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    "uris",
    [
        [],  # a common name alone is not an identity (RFC 6125 §6.4.4)
        ["https://freshmart.example"],
        [partner_uri("freshmart"), partner_uri("fuelgo")],
        ["urn:loyalfed:partner:fresh mart"],
    ],
)
def test_certificates_must_name_exactly_one_partner(uris: list[str]) -> None:
    with pytest.raises(PeerIdentityRefused, match="exactly one partner"):
        partner_from_certificate(_certificate(uris))


def test_the_partner_uri_is_the_identity() -> None:
    pem = _certificate(["https://careplus.example", partner_uri("freshmart-north")])
    assert partner_from_certificate(pem) == "freshmart-north"
    scope = {"scheme": "https", "extensions": {"tls": {"client_cert_chain": [pem]}}}
    assert authenticate_peer(scope, "freshmart-north", PeerAuthentication.CERTIFICATE).method == "certificate"
    with pytest.raises(PeerIdentityRefused, match="server misconfigured"):
        authenticate_peer({"scheme": "https"}, "freshmart-north", PeerAuthentication.CERTIFICATE_OR_LOOPBACK)
    remote = {"scheme": "http", "client": ("10.0.0.5", 5000)}
    with pytest.raises(PeerIdentityRefused, match="only over mutually authenticated TLS"):
        authenticate_peer(remote, "freshmart-north", PeerAuthentication.CERTIFICATE_OR_LOOPBACK)
    with pytest.raises(ValueError, match="partner id"):
        partner_uri("fresh mart")


def test_the_initiator_checks_the_partner_that_answers(serve, pki, clock, tmp_path) -> None:
    careplus = _service("careplus", 0, 200, records=[], clock=clock, tmp=tmp_path)
    base = serve(create_matching_app(careplus))
    freshmart = _service("freshmart", 0, 100, records=[], clock=clock, tmp=tmp_path)
    client = _as(pki, base, cert="freshmart", claims="freshmart")
    # freshmart means to match with fuelgo, but careplus's node answers at that address.
    with pytest.raises(PeerIdentityRefused, match="the node that answered is careplus, expected fuelgo"):
        freshmart.initiate(client, peer="fuelgo")
    assert freshmart.initiate(client, peer="careplus").result.cardinality == 100
