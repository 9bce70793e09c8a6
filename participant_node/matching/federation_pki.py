"""The federation's certificates: a private CA, the SuperLink's server certificate, partner node certificates.

For federations on one machine only — the demo's throwaway federation on loopback and the tests'
(``tests/deploy/one_machine_certificates.py``): it makes every partner's key in one place. A real
federation never does that; each organisation makes its own keys with ``loyalfed pki`` (package
``pki``) and only requests travel. Both issue through this module, so the partner identity a node checks
(``peer_identity.partner_uri``) and the one its certificate carries cannot drift apart.

ECDSA P-256 keys, SHA-256 signatures. A server certificate names its hosts as subject alternative
names, as TLS clients match names against the SAN and ignore the common name (RFC 6125 §6.4.4).
A partner node certificate names the partner in a SAN URI ``urn:loyalfed:partner:<id>`` and is
good for both TLS roles (RFC 5280 §4.2.1.12 extended key usage): a node opens PSI sessions as a
client and answers them as a server at its own hosts.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from participant_node.matching.peer_identity import PARTNER_URI_PREFIX, partner_uri
from participant_node.matching.tls_scope import NodeTls

__all__ = [
    "PARTNER_URI_PREFIX",
    "CertifiedKey",
    "FederationCertificates",
    "generate_certificates",
    "issue_federation_ca",
    "issue_node_certificates",
    "issue_partner_certificate",
    "issue_server_certificate",
    "parse_partner",
]

# Certificates start a few minutes in the past so a peer whose clock lags slightly accepts them.
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, folder: Path, stem: str, *, suffix: str = ".pem") -> None:
        """``folder/stem{suffix}`` (certificate, PEM) and ``folder/stem.key`` (PKCS #8, mode 0600)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}{suffix}").write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        key_path = folder / f"{stem}.key"
        key_path.touch(mode=0o600)
        key_path.chmod(0o600)  # before the key is written: an existing file may have been readable
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


@dataclass(frozen=True)
class FederationCertificates:
    """A folder as ``generate_certificates`` writes it: ``ca.crt`` and ``partners/<id>.pem|.key``."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    def certificate(self, partner: str) -> Path:
        return self.folder / "partners" / f"{partner}.pem"

    def key(self, partner: str) -> Path:
        return self.folder / "partners" / f"{partner}.key"

    def node_tls(self, partner: str) -> NodeTls:
        """What ``node_server_config`` needs to serve ``partner``'s PSI endpoint over mTLS."""
        return NodeTls(certfile=self.certificate(partner), keyfile=self.key(partner), ca=self.ca)

    def client_context(self, partner: str) -> ssl.SSLContext:
        """A TLS client context that trusts only the federation CA and presents ``partner``'s certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.certificate(partner)), str(self.key(partner)))
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "loyalfed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Sequence[str], uris: Sequence[str] = ()) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue_federation_ca(*, now: datetime, days: int = 365) -> CertifiedKey:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("loyalfed federation CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # RFC 5280 §4.2.1.3: a CA key signs certificates and CRLs, nothing else.
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(certificate, key)


def _leaf(
    ca: CertifiedKey,
    *,
    name: str,
    san: x509.SubjectAlternativeName,
    usages: list[x509.ObjectIdentifier],
    now: datetime,
    days: int,
) -> CertifiedKey:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return CertifiedKey(certificate, key)


def issue_server_certificate(
    ca: CertifiedKey, hosts: Sequence[str], *, now: datetime, days: int = 365
) -> CertifiedKey:
    """A TLS server certificate (the SuperLink's) naming every host; no partner identity."""
    if not hosts:
        raise ValueError("name at least one host for the server certificate")
    return _leaf(
        ca, name=hosts[0], san=_san(hosts), usages=[ExtendedKeyUsageOID.SERVER_AUTH], now=now, days=days
    )


def issue_partner_certificate(
    ca: CertifiedKey, partner: str, hosts: Sequence[str] = (), *, now: datetime, days: int = 365
) -> CertifiedKey:
    """``partner``'s node certificate: its SAN URI, plus the hosts its PSI endpoint answers at."""
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    san = _san(hosts, (partner_uri(partner),))  # partner_uri refuses a malformed id
    return _leaf(ca, name=partner, san=san, usages=usages, now=now, days=days)


def parse_partner(spec: str) -> tuple[str, list[str]]:
    """``"careplus@psi.careplus.example,10.0.0.7"`` -> ``("careplus", [hosts])``; hosts optional."""
    partner, _, hosts = spec.partition("@")
    partner_uri(partner)  # validates the id
    return partner, [h for h in hosts.split(",") if h]


def _write_partners(
    out: Path, ca: CertifiedKey, partners: Mapping[str, Sequence[str]], *, now: datetime, days: int
) -> FederationCertificates:
    for partner in partners:
        partner_uri(partner)  # refuse a bad id before writing anything for the partners
    for partner, hosts in partners.items():
        issue_partner_certificate(ca, partner, hosts, now=now, days=days).write(out / "partners", partner)
    return FederationCertificates(out)


def generate_certificates(
    out: Path,
    hosts: Sequence[str],
    *,
    partners: Mapping[str, Sequence[str]] | None = None,
    days: int = 365,
    now: datetime | None = None,
) -> Path:
    """A federation's certificates into ``out``: ``ca.crt``/``ca.key``, ``server.pem``/``server.key``
    for the SuperLink at ``hosts``, and ``partners/<id>.pem``/``.key`` per partner; returns ``out``.

    ``partners`` maps a partner id to the hosts its own PSI endpoint answers at (may be empty).
    Keep ``ca.key`` offline: whoever holds it can issue any partner's identity.
    """
    if not hosts:
        raise ValueError("name at least one host for the server certificate")
    now = now or datetime.now(UTC)
    out.mkdir(parents=True, exist_ok=True)
    ca = issue_federation_ca(now=now, days=days)
    ca.write(out, "ca", suffix=".crt")
    issue_server_certificate(ca, hosts, now=now, days=days).write(out, "server")
    _write_partners(out, ca, partners or {}, now=now, days=days)
    return out


def issue_node_certificates(
    out: Path, partners: Mapping[str, Sequence[str]], *, days: int = 1, now: datetime | None = None
) -> FederationCertificates:
    """A throwaway federation for one machine: ``ca.crt`` and partner certificates, no CA key.

    The CA's private key is never written, so nothing more can be issued under this CA once the
    call returns (the demo; the tests use ``generate_certificates``, which keeps the CA key).
    """
    now = now or datetime.now(UTC)
    out.mkdir(parents=True, exist_ok=True)
    ca = issue_federation_ca(now=now, days=days)
    (out / "ca.crt").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    return _write_partners(out, ca, partners, now=now, days=days)
