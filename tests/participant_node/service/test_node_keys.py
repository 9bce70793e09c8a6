"""The node's key material: made on first start, private modes, kept across restarts, CA-signed request."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from participant_node.service.errors import NodeSetupError
from participant_node.service.node_keys import check_certificate, ensure_node_keys
from pki import CertificateRole, PkiError, create_federation_ca, sign_request
from pki.certificate_request import partner_uri

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_makes_private_keys_and_a_request_and_a_restart_keeps_them(tmp_path: Path) -> None:
    keys = ensure_node_keys(tmp_path / "state", partner="freshmart-north", hosts=["127.0.0.1"])
    for folder in (keys.state, keys.state / "keys", keys.state / "tls"):
        assert _mode(folder) == 0o700
    for secret in (keys.supernode_key, keys.tls_key, keys.local_secret, keys.matching_secret):
        assert _mode(secret) == 0o600
    # Flower reads the SuperNode key as an OpenSSH private key on a NIST curve.
    supernode = serialization.load_ssh_private_key(keys.supernode_key.read_bytes(), None)
    assert isinstance(supernode, ec.EllipticCurvePrivateKey) and supernode.curve.name == "secp384r1"
    public = serialization.load_pem_public_key(keys.supernode_public_key_pem().encode())
    assert keys.supernode_public_key.read_bytes().startswith(b"ecdsa-sha2-nistp384 ")
    assert public == supernode.public_key()
    before = keys.supernode_key.read_bytes(), keys.tls_key.read_bytes(), keys.local_secret_value()
    again = ensure_node_keys(tmp_path / "state", partner="freshmart-north", hosts=["127.0.0.1"])
    assert (
        again.supernode_key.read_bytes(),
        again.tls_key.read_bytes(),
        again.local_secret_value(),
    ) == before


def test_the_federation_ca_signs_the_request_for_that_partner_only(tmp_path: Path) -> None:
    keys = ensure_node_keys(tmp_path / "state", partner="freshmart-north", hosts=["127.0.0.1"])
    with pytest.raises(NodeSetupError, match=r"send .*node\.csr to the federation CA"):
        check_certificate(keys)
    ca = create_federation_ca(tmp_path / "ca", now=NOW)
    request = keys.tls_request.read_bytes()
    with pytest.raises(PkiError):
        sign_request(ca, request, role=CertificateRole.NODE, partner="freshmart-south", now=NOW)
    keys.tls_certificate.write_bytes(
        sign_request(ca, request, role=CertificateRole.NODE, partner="freshmart-north", now=NOW)
    )
    keys.federation_ca.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    checked = check_certificate(keys)
    san = checked.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [partner_uri("freshmart-north")]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_a_certificate_for_another_key_is_refused(tmp_path: Path) -> None:
    keys = ensure_node_keys(tmp_path / "a", partner="freshmart-north", hosts=[])
    other = ensure_node_keys(tmp_path / "b", partner="freshmart-north", hosts=[])
    ca = create_federation_ca(tmp_path / "ca", now=NOW)
    keys.tls_certificate.write_bytes(
        sign_request(
            ca, other.tls_request.read_bytes(), role=CertificateRole.NODE, partner="freshmart-north", now=NOW
        )
    )
    keys.federation_ca.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(NodeSetupError, match="was not issued for this node's key"):
        check_certificate(keys)


def test_an_operator_made_tls_key_is_used_instead_of_a_new_one(tmp_path: Path) -> None:
    from pki import create_key_and_request

    made = create_key_and_request(tmp_path / "keys", CertificateRole.NODE, partner="freshmart-north")
    keys = ensure_node_keys(tmp_path / "state", partner="freshmart-north", hosts=[], tls_key=made.private_key)
    assert keys.tls_key == made.private_key and not (tmp_path / "state" / "tls" / "node.key").exists()
    ca = create_federation_ca(tmp_path / "ca", now=NOW)
    keys.tls_certificate.write_bytes(
        sign_request(
            ca, made.request.read_bytes(), role=CertificateRole.NODE, partner="freshmart-north", now=NOW
        )
    )
    keys.federation_ca.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    check_certificate(keys)
    with pytest.raises(NodeSetupError, match="no such TLS key file"):
        ensure_node_keys(
            tmp_path / "other", partner="freshmart-north", hosts=[], tls_key=tmp_path / "none.key"
        )
