"""Who is asking: the peer's partner id, taken from its verified mTLS client certificate.

A session opening names its initiator (``initiator_partner``), but a body is only a claim: any
holder of a federation certificate could name another partner and so escape that partner's
per-pair daily cap and "mostly new set" rule, or match under the consent scope granted to the
other partner. The node therefore takes the identity from the certificate the TLS layer verified
against the federation CA, and refuses a body that names anyone else.

Certificates name their partner in a subject-alternative-name URI ``urn:loyalfed:partner:<id>``
(``loyalfed pki request --role node --partner <id>`` asks for them). The URI, not the common name, is
authoritative: RFC 6125 §6.4.4 deprecates identities in the CN, and a URI SAN cannot be confused
with a host name the same certificate may carry for its own PSI endpoint (RFC 5280 §4.2.1.6).

The certificate reaches the application through the ASGI TLS extension
(``scope["extensions"]["tls"]``, https://asgi.readthedocs.io/en/latest/specs/tls.html), which
``participant_node.matching.tls_scope`` adds for uvicorn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import ip_address
from typing import Any

from cryptography import x509

from participant_node.matching.errors import MatchingRefused, RefusalRule
from pki.certificate_request import PARTNER_ID, PARTNER_URI_PREFIX, partner_uri

__all__ = [
    "PARTNER_URI_PREFIX",
    "AuthenticatedPeer",
    "PeerAuthentication",
    "PeerIdentityRefused",
    "authenticate_peer",
    "partner_from_certificate",
    "partner_uri",
]


class PeerAuthentication(StrEnum):
    """How a node establishes which partner opened a session.

    ``certificate``: only from the verified client certificate; plain-HTTP requests are refused.
    ``certificate_or_loopback``: the certificate when the connection is TLS; on a plain-HTTP
    connection from the loopback interface the declared id is accepted and the run record says so.
    An explicit opt-in for local development (``MatchingConfig`` defaults to ``certificate``). Never
    put a TLS-terminating proxy on the same host in this mode: every request would arrive from
    loopback without a certificate.
    """

    CERTIFICATE = "certificate"
    CERTIFICATE_OR_LOOPBACK = "certificate_or_loopback"


class PeerIdentityRefused(MatchingRefused):
    """The peer's certificate is missing, names no partner, or names another partner than the body.

    ``certified`` is the partner the certificate does name, if any (for the audit record).
    """

    def __init__(self, message: str, *, certified: str | None = None) -> None:
        super().__init__(message, rule=RefusalRule.PEER_IDENTITY)
        self.certified = certified


@dataclass(frozen=True)
class AuthenticatedPeer:
    """The partner behind a request and how we know (``certificate`` or ``loopback-declared``)."""

    partner: str
    method: str


def partner_from_certificate(certificate: bytes | str) -> str:
    """The partner id in a certificate's ``urn:loyalfed:partner:`` SAN URI (PEM or DER).

    Raises ``PeerIdentityRefused`` unless the certificate names exactly one well-formed partner.
    """
    try:
        if isinstance(certificate, str):
            cert = x509.load_pem_x509_certificate(certificate.encode("ascii"))
        else:
            cert = x509.load_der_x509_certificate(certificate)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = None
    except ValueError as err:
        raise PeerIdentityRefused("client certificate could not be parsed") from err
    uris = names.get_values_for_type(x509.UniformResourceIdentifier) if names else []
    partners = [u[len(PARTNER_URI_PREFIX) :] for u in uris if u.startswith(PARTNER_URI_PREFIX)]
    if len(partners) != 1 or not PARTNER_ID.match(partners[0]):
        raise PeerIdentityRefused(
            f"client certificate must name exactly one partner as a SAN URI {PARTNER_URI_PREFIX}<id> "
            f"(found {len(partners)})"
        )
    return partners[0]


def _is_loopback(client: Any) -> bool:
    try:
        return client is not None and ip_address(client[0]).is_loopback
    except ValueError:
        return False


def authenticate_peer(scope: Mapping[str, Any], claimed: str, mode: PeerAuthentication) -> AuthenticatedPeer:
    """The partner behind the ASGI request ``scope``; refuses a ``claimed`` id it cannot confirm."""
    tls = (scope.get("extensions") or {}).get("tls")
    if tls is not None:
        chain = list(tls.get("client_cert_chain") or ())
        if not chain:
            raise PeerIdentityRefused("no verified client certificate on this connection")
        partner = partner_from_certificate(chain[0])
        if partner != claimed:
            raise PeerIdentityRefused(
                f"the client certificate identifies partner {partner}, but the request claims {claimed}",
                certified=partner,
            )
        return AuthenticatedPeer(partner, "certificate")
    if scope.get("scheme") == "https":
        # TLS without the extension: the server was not started with tls_scope's protocol.
        raise PeerIdentityRefused("this node cannot see client certificates (server misconfigured)")
    if mode == PeerAuthentication.CERTIFICATE_OR_LOOPBACK and _is_loopback(scope.get("client")):
        return AuthenticatedPeer(claimed, "loopback-declared")
    raise PeerIdentityRefused("this node answers PSI sessions only over mutually authenticated TLS")
