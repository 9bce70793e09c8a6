"""federation_pki: the demo's throwaway federation CA and node certificates, used over real mTLS."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from test_matching_service import Clock, _service

from participant_node.matching.client import MatchingClient
from participant_node.matching.federation_pki import issue_node_certificates, parse_partner
from participant_node.matching.peer_identity import partner_from_certificate
from participant_node.matching.service import create_matching_app
from psi.wire import PsiMode

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
_FRAME = f"/psi/v1/sessions/{'ab' * 16}/frames/1/0"  # any request: an unknown session


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_node_certificates_chain_to_a_ca_whose_key_is_never_written(tmp_path: Path) -> None:
    pki = issue_node_certificates(
        tmp_path, {"careplus": ["127.0.0.1", "localhost"], "freshmart": []}, now=NOW
    )
    ca = _load(pki.ca)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "ca.crt", "careplus.key", "careplus.pem", "freshmart.key", "freshmart.pem",
    ]  # fmt: skip
    careplus = _load(pki.certificate("careplus"))
    careplus.verify_directly_issued_by(ca)
    san = careplus.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert partner_from_certificate(pki.certificate("careplus").read_text()) == "careplus"
    usages = careplus.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    # One day by default, starting a little before ``now`` for peers whose clocks lag.
    assert careplus.not_valid_after_utc == NOW + timedelta(days=1)
    assert careplus.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert {pki.key(p).stat().st_mode & 0o777 for p in ("careplus", "freshmart")} == {0o600}


def test_a_bad_partner_id_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="partner id 'fresh mart'"):
        issue_node_certificates(tmp_path, {"careplus": [], "fresh mart": []})
    assert not (tmp_path / "partners").exists()
    assert parse_partner("careplus@psi.careplus.example,10.0.0.7") == (
        "careplus", ["psi.careplus.example", "10.0.0.7"],
    )  # fmt: skip


def test_issued_certificates_carry_a_psi_run_over_mtls(serve, tmp_path: Path) -> None:
    clock, records = Clock(), []
    pki = issue_node_certificates(tmp_path / "pki", {"careplus": ["127.0.0.1"], "freshmart": []})
    careplus = _service("careplus", 0, 200, records=records, clock=clock, tmp=tmp_path)
    base = serve(create_matching_app(careplus), node=pki.node_tls("careplus"))
    freshmart = _service("freshmart", 0, 100, records=[], clock=clock, tmp=tmp_path)
    http = httpx.Client(base_url=base, verify=pki.client_context("freshmart"), timeout=10.0)
    run = freshmart.initiate(
        MatchingClient(http, partner_id="freshmart"), peer="careplus", mode=PsiMode.CARDINALITY
    )
    assert run.result.cardinality == 100
    assert [(r.peer, r.peer_authentication) for r in records] == [("freshmart", "certificate")]


def test_certificates_of_another_federation_fail_the_handshake(serve, tmp_path: Path) -> None:
    ours = issue_node_certificates(tmp_path / "ours", {"careplus": ["127.0.0.1"], "freshmart": []})
    theirs = issue_node_certificates(tmp_path / "theirs", {"freshmart": []})
    records: list = []
    careplus = _service("careplus", 0, 200, records=records, clock=Clock(), tmp=tmp_path)
    base = serve(create_matching_app(careplus), node=ours.node_tls("careplus"))
    # The client trusts our CA (so only the server side can refuse) but presents a certificate
    # that names freshmart under another CA; then no certificate at all.
    foreign = ssl.create_default_context(cafile=str(ours.ca))
    foreign.load_cert_chain(str(theirs.certificate("freshmart")), str(theirs.key("freshmart")))
    anonymous = ssl.create_default_context(cafile=str(ours.ca))
    for context in (foreign, anonymous):
        with pytest.raises(httpx.TransportError), httpx.Client(base_url=base, verify=context) as http:
            http.get(_FRAME)
    # The application never saw those connections; our own client gets through to it.
    assert records == []
    with httpx.Client(base_url=base, verify=ours.client_context("freshmart")) as http:
        assert http.get(_FRAME).json()["type"] == "SessionGone"
