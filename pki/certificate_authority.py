"""The federation CA: created on an offline host, signs requests, never sees another private key.

The CA decides what a certificate may do from the role and partner its operator names when signing
(after checking the requester out of band), not from anything the request asks for: the request
contributes only its public key and the names it carries, and those must match the role (a node's
request names exactly its partner; a server's names hosts and no partner).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.certificate_request import ORGANISATION, PARTNER_URI_PREFIX, CertificateRole, partner_uri
from pki.errors import PkiError
from pki.key_files import write_private_key, write_public_file

__all__ = ["FederationCa", "create_federation_ca", "load_ca", "sign_request"]

# Certificates start a few minutes in the past so a peer whose clock lags slightly accepts them.
CLOCK_SKEW = timedelta(minutes=5)
_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)
_USAGES = {
    CertificateRole.COORDINATOR: [ExtendedKeyUsageOID.SERVER_AUTH],
    CertificateRole.SERVICE: [ExtendedKeyUsageOID.SERVER_AUTH],
    CertificateRole.NODE: [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
}


@dataclass(frozen=True)
class FederationCa:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def create_federation_ca(
    folder: Path, *, name: str = "loyalfed federation CA", days: int = 3650, now: datetime | None = None
) -> FederationCa:
    """``folder/ca.key`` (0600; keep this host offline) and ``folder/ca.crt`` (give it to everyone)."""
    moment = _now(now)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - CLOCK_SKEW)
        .not_valid_after(moment + timedelta(days=days))
        # RFC 5280 §4.2.1.9: path length 0, the CA signs end-entity certificates only.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # RFC 5280 §4.2.1.3: a CA key signs certificates and CRLs, nothing else.
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA384())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_key(folder / "ca.key", key_bytes)
    write_public_file(folder / "ca.crt", certificate.public_bytes(serialization.Encoding.PEM))
    return FederationCa(certificate, key)


def load_ca(folder: Path) -> FederationCa:
    """The CA in ``folder`` (``ca.crt`` and ``ca.key``), checked to belong together."""
    try:
        certificate = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    except FileNotFoundError as err:
        raise PkiError(
            f"{folder}: no federation CA here (ca.crt and ca.key); create one with pki init-ca"
        ) from err
    except ValueError as err:
        raise PkiError(f"{folder}: ca.crt or ca.key is not a PEM certificate / unencrypted key") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        raise PkiError(f"{folder}: ca.key does not belong to ca.crt")
    return FederationCa(certificate, key)


def _checked_request(data: bytes) -> x509.CertificateSigningRequest:
    try:
        request = x509.load_pem_x509_csr(data)
    except ValueError as err:
        raise PkiError("not a PEM certificate signing request") from err
    if not request.is_signature_valid:
        raise PkiError("the request's signature does not verify (altered in transit?)")
    public_key = request.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, _ACCEPTED_CURVES
    ):
        raise PkiError("the request's key must be ECDSA P-256 or P-384")
    return request


def _checked_names(
    request: x509.CertificateSigningRequest, role: CertificateRole, partner: str | None
) -> x509.SubjectAlternativeName:
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as err:
        raise PkiError("the request carries no subject alternative names") from err
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    hosts = san.get_values_for_type(x509.DNSName) + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]
    if any(not u.startswith(PARTNER_URI_PREFIX) for u in uris):
        raise PkiError("the request carries a URI that is not a loyalfed partner identity")
    if role is CertificateRole.NODE:
        if partner is None:
            raise PkiError("name the partner you checked this request belongs to (--partner ID)")
        if uris != [partner_uri(partner)]:
            named = ", ".join(uris) or "no partner"
            raise PkiError(f"the request names {named}, not exactly {partner_uri(partner)}")
    elif uris or partner:
        raise PkiError(f"a {role.value} certificate carries no partner identity")
    elif not hosts:
        raise PkiError(f"a {role.value} request must name at least one host")
    return san


def sign_request(
    ca: FederationCa,
    request_pem: bytes,
    *,
    role: CertificateRole,
    partner: str | None = None,
    days: int = 365,
    now: datetime | None = None,
) -> bytes:
    """The PEM certificate for ``request_pem`` in ``role`` (and for ``partner``), signed by ``ca``."""
    request = _checked_request(request_pem)
    san = _checked_names(request, role, partner)
    moment = _now(now)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - CLOCK_SKEW)
        .not_valid_after(min(moment + timedelta(days=days), ca.certificate.not_valid_after_utc))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(_USAGES[role]), critical=False)
        .sign(ca.key, hashes.SHA384())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)
