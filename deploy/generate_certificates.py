"""Generate a private CA and a SuperLink server certificate for Flower's TLS connections.

    python deploy/generate_certificates.py --out certs [--host coordinator.example.org --host 10.0.0.5]

Writes ``ca.crt``/``ca.key`` (keep the key offline), ``server.pem``/``server.key`` for
``flower-superlink --ssl-certfile/--ssl-keyfile/--ssl-ca-certfile``; SuperNodes and the ``flwr``
CLI trust ``ca.crt`` (``--root-certificates``, ``root-certificates`` in the Flower config). ECDSA
P-256 keys; the server certificate names every ``--host`` as a subject alternative name, as TLS
clients match names against the SAN and ignore the common name (RFC 6125 §6.4.4).
"""

from __future__ import annotations

import argparse
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["generate_certificates"]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "loyalfed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def generate_certificates(
    out: Path, hosts: list[str], *, days: int = 365, now: datetime | None = None
) -> Path:
    """Write the CA and server key pairs into ``out``; returns ``out``."""
    if not hosts:
        raise ValueError("name at least one host for the server certificate")
    now = now or datetime.now(UTC)
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("loyalfed federation CA"))
        .issuer_name(_name("loyalfed federation CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (out / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(out / "ca.key", ca_key)
    (out / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(out / "server.key", server_key)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the certificates to")
    parser.add_argument("--host", action="append", default=None, help="server name or IP (repeatable)")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    generate_certificates(args.out, args.host or ["127.0.0.1", "localhost"], days=args.days)
    print(args.out)


if __name__ == "__main__":
    main()
