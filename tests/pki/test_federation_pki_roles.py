"""Keys made by their owners, requests signed by the CA for the role its operator names.

The handshakes run over real TLS on loopback: a node certificate signed from a request must
authenticate as that partner to a server that trusts only the federation CA.
"""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki import (
    CertificateRole,
    PkiError,
    create_federation_ca,
    create_key_and_request,
    create_supernode_key,
    describe_certificate,
    load_ca,
    sign_request,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_key_is_private_and_never_replaced(tmp_path: Path) -> None:
    create_federation_ca(tmp_path / "ca")
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    assert _mode(tmp_path / "ca") == 0o700
    with pytest.raises(PkiError, match="already exists"):
        create_federation_ca(tmp_path / "ca")
    loaded = load_ca(tmp_path / "ca")
    assert loaded.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_node_request_becomes_a_partner_certificate_for_both_tls_roles(tmp_path: Path) -> None:
    ca = create_federation_ca(tmp_path / "ca")
    files = create_key_and_request(
        tmp_path / "careplus", CertificateRole.NODE, partner="careplus", hosts=["127.0.0.1"]
    )
    assert _mode(files.private_key) == 0o600
    pem = sign_request(ca, files.request.read_bytes(), role=CertificateRole.NODE, partner="careplus")
    described = describe_certificate(pem)
    assert described["partner"] == "careplus" and described["hosts"] == ["127.0.0.1"]
    usages = (
        x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}


@pytest.mark.parametrize(
    ("role", "partner", "hosts", "sign_as", "rule"),
    [
        (CertificateRole.NODE, "careplus", [], "freshmart", "not exactly urn:loyalfed:partner:freshmart"),
        (CertificateRole.NODE, "careplus", [], None, "name the partner you checked"),
        (CertificateRole.COORDINATOR, None, ["coord.example"], "careplus", "carries no partner identity"),
    ],
)
def test_the_ca_signs_only_the_identity_its_operator_checked(
    tmp_path: Path,
    role: CertificateRole,
    partner: str | None,
    hosts: list[str],
    sign_as: str | None,
    rule: str,
) -> None:
    ca = create_federation_ca(tmp_path / "ca")
    files = create_key_and_request(tmp_path / "req", role, partner=partner, hosts=hosts)
    sign_role = CertificateRole.NODE if sign_as and role is CertificateRole.NODE else role
    with pytest.raises(PkiError, match=rule):
        sign_request(ca, files.request.read_bytes(), role=sign_role, partner=sign_as)


def test_a_node_request_cannot_be_signed_as_a_server(tmp_path: Path) -> None:
    ca = create_federation_ca(tmp_path / "ca")
    files = create_key_and_request(tmp_path / "req", CertificateRole.NODE, partner="careplus")
    with pytest.raises(PkiError, match="carries no partner identity"):
        sign_request(ca, files.request.read_bytes(), role=CertificateRole.COORDINATOR)


def test_an_altered_request_or_a_weak_key_is_refused(tmp_path: Path) -> None:
    ca = create_federation_ca(tmp_path / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    honest = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "careplus")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:loyalfed:partner:careplus")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    der = bytearray(honest.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PkiError, match="signature does not verify"):
        sign_request(ca, tampered, role=CertificateRole.NODE, partner="careplus")
    rsa_request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "careplus")]))
        .sign(rsa.generate_private_key(public_exponent=65537, key_size=2048), hashes.SHA256())
    )
    with pytest.raises(PkiError, match="ECDSA"):
        sign_request(
            ca,
            rsa_request.public_bytes(serialization.Encoding.PEM),
            role=CertificateRole.NODE,
            partner="careplus",
        )
    with pytest.raises(PkiError, match="not a PEM"):
        sign_request(ca, b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n", role=CertificateRole.NODE)


def test_signed_certificates_authenticate_over_real_mutual_tls(tmp_path: Path) -> None:
    ca = create_federation_ca(tmp_path / "ca")
    server = create_key_and_request(tmp_path / "coord", CertificateRole.COORDINATOR, hosts=["127.0.0.1"])
    node = create_key_and_request(tmp_path / "node", CertificateRole.NODE, partner="careplus")
    server_cert = tmp_path / "coord" / "coordinator.pem"
    node_cert = tmp_path / "node" / "careplus.pem"
    server_cert.write_bytes(sign_request(ca, server.request.read_bytes(), role=CertificateRole.COORDINATOR))
    node_cert.write_bytes(
        sign_request(ca, node.request.read_bytes(), role=CertificateRole.NODE, partner="careplus")
    )
    ca_file = str(tmp_path / "ca" / "ca.crt")

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_cert_chain(str(server_cert), str(server.private_key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
            san = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            seen.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=ca_file)
    client_ctx.load_cert_chain(str(node_cert), str(node.private_key))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(timeout=5)
    listener.close()
    assert seen == ["urn:loyalfed:partner:careplus"]


def test_supernode_key_is_what_flower_loads_and_registers(tmp_path: Path) -> None:
    from flwr.cli.supernode.register import try_load_public_key

    files = create_supernode_key(tmp_path / "node")
    assert _mode(files.private_key) == 0o600
    key = serialization.load_ssh_private_key(files.private_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert try_load_public_key(files.public_key)  # the bytes `flwr supernode register` would send
