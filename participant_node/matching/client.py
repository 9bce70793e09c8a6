"""The initiator side of the node-to-node PSI protocol, over HTTP with httpx.

Every request is idempotent (chunks carry their index and the responder caches its answers), so a
timeout or a dropped connection is retried chunk by chunk: the transfer resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import httpx

from participant_node.matching.errors import MatchingError, MatchingRefused, SessionGone
from participant_node.matching.peer_identity import PeerIdentityRefused, partner_from_certificate
from participant_node.matching.service import unpack_frames
from policies.purpose import Purpose
from psi.errors import PsiError
from psi.group_engine import GroupEngine
from psi.protocol import Initiator, PsiResult
from psi.ristretto255 import Rng
from psi.wire import DEFAULT_CHUNK_SIZE, WIRE_VERSION, Frame, MessageKind, PsiMode, Reveal, SessionParams

__all__ = ["MatchingClient"]

T = TypeVar("T")
_OCTETS = {"content-type": "application/octet-stream"}


class MatchingClient:
    """Runs PSI sessions against one peer node.

    Parameters
    ----------
    http
        An ``httpx.Client`` with the peer's base URL, timeouts and (m)TLS settings.
    partner_id
        This node's partner id, announced to the peer.
    retries
        Attempts per request on transport errors and timeouts.
    """

    def __init__(
        self, http: httpx.Client, *, partner_id: str, retries: int = 3, backoff_s: float = 0.2
    ) -> None:
        self.http, self.partner_id, self.retries, self.backoff_s = http, partner_id, retries, backoff_s

    def _call(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        for attempt in range(1, self.retries + 1):
            try:
                response = send()
            except httpx.TransportError as err:  # includes timeouts: resend the same chunk
                if attempt == self.retries:
                    raise MatchingError(
                        f"peer unreachable after {attempt} attempts ({type(err).__name__})"
                    ) from err
                time.sleep(self.backoff_s * attempt)
                continue
            if response.status_code < 400:
                return response
            raise _peer_error(response)
        raise AssertionError("unreachable")

    def open(
        self,
        *,
        size: int,
        purpose: Purpose,
        mode: PsiMode,
        reveal: Reveal,
        chunk_size: int,
        peer: str | None = None,
    ) -> SessionParams:
        """Open a session; over TLS with ``peer`` given, the server certificate must name that partner."""
        opening = {
            "version": WIRE_VERSION,
            "session_id": secrets.token_hex(16),
            "initiator_partner": self.partner_id,
            "purpose": str(purpose),
            "mode": str(mode),
            "reveal": str(reveal),
            "initiator_size": size,
            "chunk_size": chunk_size,
        }
        response = self._call(lambda: self.http.post("/psi/v1/sessions", json=opening))
        if peer is not None:
            _check_server_identity(response, peer)
        params = SessionParams.from_json(response.content)
        if (params.session_id, params.mode, params.initiator_size) != (opening["session_id"], mode, size):
            raise MatchingError("peer answered with different session parameters")
        return params

    def _fetch(self, params: SessionParams, kind: MessageKind, chunks: int) -> list[Frame]:
        url = f"/psi/v1/sessions/{params.session_id}/frames/{int(kind)}/"
        return [Frame.decode(self._call(partial(self.http.get, url + str(c))).content) for c in range(chunks)]

    def _put(self, params: SessionParams, frame: Frame) -> list[Frame]:
        url, body = f"/psi/v1/sessions/{params.session_id}/frames", frame.encode()
        return list(
            unpack_frames(self._call(lambda: self.http.put(url, content=body, headers=_OCTETS)).content)
        )

    def run(
        self,
        items: list[bytes],
        *,
        purpose: Purpose = Purpose.CROSS_BRAND_MATCHING,
        mode: PsiMode = PsiMode.INTERSECTION,
        reveal: Reveal = Reveal.INITIATOR,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        engine: GroupEngine,
        rng: Rng = os.urandom,
        check_peer: Callable[[SessionParams], None] | None = None,
        peer: str | None = None,
    ) -> PsiResult:
        """One full session: open, exchange every chunk, send the final messages, close."""
        params = self.open(
            size=len(items), purpose=purpose, mode=mode, reveal=reveal, chunk_size=chunk_size, peer=peer
        )
        try:
            if check_peer is not None:
                check_peer(params)
            initiator = Initiator(items, params, engine=engine, rng=rng)
            peer_chunks = params.chunks_for(params.responder_size)
            for frame in self._fetch(params, MessageKind.RESPONDER_ELEMENTS, peer_chunks):
                initiator.receive(frame)
            if mode == PsiMode.SUM:
                for frame in self._fetch(params, MessageKind.RESPONDER_CIPHERTEXTS, peer_chunks):
                    initiator.receive(frame)
            for frame in initiator.element_frames():
                for reply in self._put(params, frame):
                    initiator.receive(reply)
            if mode != PsiMode.INTERSECTION:
                for frame in self._fetch(params, MessageKind.INITIATOR_TAGS, params.chunks_for(len(items))):
                    initiator.receive(frame)
            for frame in initiator.final_frames():
                self._put(params, frame)
            return initiator.result()
        finally:
            self._close(params)

    def _close(self, params: SessionParams) -> None:
        # Already gone (timed out) is fine: the peer has recorded the run as expired.
        with contextlib.suppress(MatchingError, PsiError):
            self._call(lambda: self.http.delete(f"/psi/v1/sessions/{params.session_id}"))


def _check_server_identity(response: httpx.Response, peer: str) -> None:
    """Mutual binding: the node that answered must hold ``peer``'s certificate.

    TLS already checked the host name against the CA; this checks the partner the certificate
    names, so a partner cannot stand in for another behind a redirected name. Plain HTTP (local
    development against a node that opted into ``certificate_or_loopback``) carries no certificate
    and is not checked here; the server side decides whether plain HTTP is acceptable
    (``PeerAuthentication``; nodes refuse it by default).
    """
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return
    der = ssl_object.getpeercert(True)  # positional: httpcore hands out the C-level _SSLSocket
    try:
        named = partner_from_certificate(der) if der else None
    except PeerIdentityRefused:
        named = None
    if named != peer:
        raise PeerIdentityRefused(
            f"the node that answered is {named or 'not a named partner'}, expected {peer}", certified=named
        )


def _peer_error(response: httpx.Response) -> MatchingError:
    try:
        detail = response.json()
        message, kind = str(detail.get("error", "")), str(detail.get("type", ""))
    except ValueError:
        message, kind = f"HTTP {response.status_code}", ""
    message = f"peer: {message}"[:300]
    if response.status_code == 403:
        return MatchingRefused(message)
    if response.status_code == 404:
        return SessionGone(message)
    return MatchingError(f"{message} ({kind or response.status_code})")
