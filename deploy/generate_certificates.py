"""Generate a private CA, a SuperLink server certificate and partner node certificates.

    python deploy/generate_certificates.py --out certs [--host coordinator.example.org --host 10.0.0.5]
        [--partner careplus@psi.careplus.example --partner freshmart-north ...]

Writes ``ca.crt``/``ca.key`` (keep the key offline), ``server.pem``/``server.key`` for
``flower-superlink --ssl-certfile/--ssl-keyfile/--ssl-ca-certfile``; SuperNodes and the ``flwr``
CLI trust ``ca.crt`` (``--root-certificates``, ``root-certificates`` in the Flower config). ECDSA
P-256 keys; the server certificate names every ``--host`` as a subject alternative name, as TLS
clients match names against the SAN and ignore the common name (RFC 6125 §6.4.4).

Each ``--partner ID[@HOST,...]`` also gets ``partners/ID.pem``/``partners/ID.key``: the node's
certificate for node-to-node PSI over mTLS, both as client (it opens sessions) and as server (it
answers them at HOSTs). It names the partner in a SAN URI ``urn:loyalfed:partner:ID``, which is
where a node takes its peer's identity from (``participant_node.matching.peer_identity``; the
common name is informative only).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PARTNER_URI_PREFIX", "generate_certificates", "parse_partner"]

# Must equal participant_node.matching.peer_identity.PARTNER_URI_PREFIX (this script stays
# standalone so it can run on a host without the project; a test checks that nodes accept it).
PARTNER_URI_PREFIX = "urn:loyalfed:partner:"
_PARTNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "loyalfed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str], uris: tuple[str, ...] = ()) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
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


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    name: str,
    san: x509.SubjectAlternativeName,
    usages: list[x509.ObjectIdentifier],
    now: datetime,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_pair(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / f"{stem}.key", key)


def parse_partner(spec: str) -> tuple[str, list[str]]:
    """``"careplus@psi.careplus.example,10.0.0.7"`` -> ``("careplus", [hosts])``; hosts optional."""
    partner, _, hosts = spec.partition("@")
    if not _PARTNER_ID.match(partner):
        raise ValueError(f"partner id {partner!r} must match {_PARTNER_ID.pattern}")
    return partner, [h for h in hosts.split(",") if h]


def generate_certificates(
    out: Path,
    hosts: list[str],
    *,
    partners: dict[str, list[str]] | None = None,
    days: int = 365,
    now: datetime | None = None,
) -> Path:
    """Write the CA, the server and each partner's key pair into ``out``; returns ``out``.

    ``partners`` maps a partner id to the host names its own PSI endpoint answers at (may be empty).
    """
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
    (out / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(out / "ca.key", ca_key)
    server = _leaf(
        ca,
        ca_key,
        name=hosts[0],
        san=_san(hosts),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        now=now,
        days=days,
    )
    _write_pair(out, "server", *server)
    if partners:
        (out / "partners").mkdir(exist_ok=True)
    for partner, partner_hosts in (partners or {}).items():
        parse_partner(partner)  # validates the id
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        san = _san(partner_hosts, (PARTNER_URI_PREFIX + partner,))
        pair = _leaf(ca, ca_key, name=partner, san=san, usages=usages, now=now, days=days)
        _write_pair(out / "partners", partner, *pair)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the certificates to")
    parser.add_argument("--host", action="append", default=None, help="server name or IP (repeatable)")
    parser.add_argument(
        "--partner",
        action="append",
        default=[],
        help="partner node certificate: ID or ID@HOST[,HOST] (repeatable)",
    )
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    partners = dict(parse_partner(spec) for spec in args.partner)
    generate_certificates(
        args.out, args.host or ["127.0.0.1", "localhost"], partners=partners, days=args.days
    )
    print(args.out)


if __name__ == "__main__":
    main()
