"""Keys and certificate signing requests, made on the host that will use the key (RFC 2986).

Roles fix what a certificate may do (RFC 5280 §4.2.1.12 extended key usage):
- ``coordinator`` — a TLS server (the control-plane API and the Flower SuperLink) at named hosts;
- ``node`` — a partner's node: TLS client and server, named by the SAN URI
  ``urn:loyalfed:partner:<id>`` (the authoritative identity; RFC 6125 §6.4.4 deprecates the CN)
  plus the hosts its own API answers at;
- ``service`` — another TLS server of the federation (the audit service).
Keys are ECDSA P-256, signatures SHA-256.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pki.errors import PkiError
from pki.key_files import write_private_key, write_public_file

__all__ = [
    "PARTNER_ID",
    "PARTNER_URI_PREFIX",
    "CertificateRole",
    "RequestFiles",
    "create_key_and_request",
    "describe_certificate",
    "partner_uri",
    "subject_alternative_names",
]

PARTNER_URI_PREFIX = "urn:loyalfed:partner:"
# Partner ids as URN specific strings (RFC 8141 §2): no spaces, colons or percent signs.
PARTNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ORGANISATION = "loyalfed"


class CertificateRole(StrEnum):
    COORDINATOR = "coordinator"
    NODE = "node"
    SERVICE = "service"


@dataclass(frozen=True)
class RequestFiles:
    private_key: Path
    request: Path


def partner_uri(partner: str) -> str:
    """The SAN URI that names ``partner`` in its node certificate."""
    if not PARTNER_ID.match(partner):
        raise PkiError(f"partner id {partner!r} must match {PARTNER_ID.pattern}")
    return PARTNER_URI_PREFIX + partner


def subject_alternative_names(hosts: Sequence[str], uris: Sequence[str] = ()) -> x509.SubjectAlternativeName:
    """URIs first, then each host as an IP address where it parses as one, else as a DNS name."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _subject(role: CertificateRole, partner: str | None, hosts: Sequence[str]) -> x509.Name:
    common_name = partner if role is CertificateRole.NODE and partner else (hosts[0] if hosts else role.value)
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def build_request(
    role: CertificateRole, *, partner: str | None = None, hosts: Sequence[str] = ()
) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    """A fresh private key and its signed request; nothing is written."""
    if role is CertificateRole.NODE and not partner:
        raise PkiError("a node certificate request names its partner (--partner ID)")
    if role is not CertificateRole.NODE and partner:
        raise PkiError(f"a {role.value} certificate names hosts, not a partner")
    if role is not CertificateRole.NODE and not hosts:
        raise PkiError(f"a {role.value} certificate names at least one host (--host NAME)")
    uris = [partner_uri(partner)] if partner else []
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(role, partner, hosts))
        .add_extension(subject_alternative_names(hosts, uris), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, request


def create_key_and_request(
    folder: Path,
    role: CertificateRole,
    *,
    partner: str | None = None,
    hosts: Sequence[str] = (),
    stem: str | None = None,
) -> RequestFiles:
    """Write ``folder/<stem>.key`` (0600, stays here) and ``folder/<stem>.csr`` (send it to the CA)."""
    key, request = build_request(role, partner=partner, hosts=hosts)
    name = stem or (partner if partner else role.value)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return RequestFiles(
        write_private_key(folder / f"{name}.key", key_bytes),
        write_public_file(folder / f"{name}.csr", request.public_bytes(serialization.Encoding.PEM)),
    )


def describe_certificate(data: bytes) -> dict[str, object]:
    """What a PEM certificate or request says: subject, role, partner, hosts, validity, fingerprint."""
    try:
        if b"CERTIFICATE REQUEST" in data:
            request = x509.load_pem_x509_csr(data)
            return {
                "kind": "request",
                "subject": request.subject.rfc4514_string(),
                "signature_valid": request.is_signature_valid,
                **_names(request.extensions),
            }
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as err:
        raise PkiError("not a PEM certificate or certificate request") from err
    return {
        "kind": "certificate",
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
        **_names(certificate.extensions),
    }


def _names(extensions: x509.Extensions) -> dict[str, object]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"partner": None, "hosts": []}
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    partners = [u[len(PARTNER_URI_PREFIX) :] for u in uris if u.startswith(PARTNER_URI_PREFIX)]
    hosts = [str(h) for h in san.get_values_for_type(x509.DNSName)]
    hosts += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return {"partner": partners[0] if len(partners) == 1 else None, "hosts": hosts}
