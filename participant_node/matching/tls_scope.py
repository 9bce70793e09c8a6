"""Serve a node's PSI API over mTLS with the peer certificate in the ASGI scope.

uvicorn 0.49 verifies client certificates (``ssl_cert_reqs=CERT_REQUIRED``) but does not implement
the ASGI TLS extension (https://asgi.readthedocs.io/en/latest/specs/tls.html; uvicorn issue 745,
pull request 1119 unmerged), so the application cannot tell which certificate a request came with.
The protocol class below is uvicorn's own h11 HTTP protocol with one addition: when a
connection is made (asyncio calls ``connection_made`` after the TLS handshake), it reads the
verified peer certificate from the transport's ``ssl_object`` and wrap the per-connection ASGI app
so every request on that connection carries ``scope["extensions"]["tls"]``. A connection is one TLS
session, so one certificate per protocol instance is exact (the extension's own rule).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "NodeTls",
    "PeerCertificateH11Protocol",
    "PeerCertificateHttpToolsProtocol",
    "node_server_config",
    "tls_extension",
]

Scope = MutableMapping[str, Any]
Asgi = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

# ASGI TLS extension: tls_version is the TLS ProtocolVersion number (RFC 8446 §4.2.1).
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI ``tls`` scope extension for one TLS connection.

    ``client_cert_chain`` holds only the leaf certificate: Python 3.11's ``ssl`` exposes the
    verified peer certificate but not the chain it was verified through (``get_verified_chain``
    arrives in 3.13), and the leaf is all the node needs.
    """
    der = ssl_object.getpeercert(True)  # binary form (DER)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": None,  # Python names the suite but does not give its IANA number
    }


def _with_tls(app: Asgi, tls: dict[str, Any]) -> Asgi:
    async def app_with_tls(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": tls}}
        await app(scope, receive, send)

    return app_with_tls


class PeerCertificateH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding the ASGI TLS extension on TLS connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _with_tls(self.app, tls_extension(ssl_object))


class PeerCertificateHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (a C HTTP parser, several times cheaper per request than h11),
    adding the ASGI TLS extension on TLS connections exactly as ``PeerCertificateH11Protocol``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _with_tls(self.app, tls_extension(ssl_object))


@dataclass(frozen=True)
class NodeTls:
    """The node's certificate and key, and the federation CA its peers' certificates must chain to."""

    certfile: Path
    keyfile: Path
    ca: Path


def node_server_config(
    app: Any,
    *,
    tls: NodeTls,
    host: str = "127.0.0.1",
    port: int = 8443,
    http: type[H11Protocol] | type[HttpToolsProtocol] = PeerCertificateH11Protocol,
    **options: Any,
) -> uvicorn.Config:
    """A uvicorn config that requires a client certificate and hands it to ``app``.

    ``http`` is one of the two protocol classes above. Proxy headers are off: behind mTLS nothing
    upstream may rewrite the client's address.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http,
        ssl_certfile=str(tls.certfile),
        ssl_keyfile=str(tls.keyfile),
        ssl_ca_certs=str(tls.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        proxy_headers=False,
        **options,
    )
