"""The node's client for a partner node's points endpoints, over HTTPS with mutual TLS (httpx).

The answering node must hold the expected partner's certificate (the federation CA checked the
chain; this checks the partner the certificate names, as ``matching.client`` does for PSI). Errors
come back as ``PeerError`` with the status and the peer's public message, never its raw body.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from participant_node.matching.peer_identity import PeerIdentityRefused, partner_from_certificate
from participant_node.points.errors import PeerError
from participant_node.points.wire import (
    POINTS_WIRE_VERSION,
    DecisionReply,
    DecisionRequest,
    ItemResult,
    LinkAnswer,
    LinkOpening,
    LinkReveal,
    LinkRevealReply,
    ReserveReply,
    ReserveRequest,
    ResolveReply,
    ResolveRequest,
    SignedStatement,
    opening_digest,
    version_refusal,
)

__all__ = ["PEER_PATHS", "PeerClient"]

Reply = TypeVar("Reply", bound=BaseModel)

# Link sessions blind every consented member and settlement scans a period: allow them longer.
_SLOW_S = 300.0
# How many times a link opening is sent while only other openings' answers come back.
_LINK_ASKS = 5

PEER_PATHS = {
    "reserve": "/points/v1/peer/reserve",
    "resolve": "/points/v1/peer/resolve",
    "decisions": "/points/v1/peer/decisions",
    "link_open": "/points/v1/peer/link",
    "settle": "/points/v1/peer/settlements",
}


class PeerClient:
    """Calls one partner node. ``http`` carries the base URL, timeouts and the client certificate."""

    def __init__(self, http: httpx.Client, *, peer: str) -> None:
        self.http, self.peer = http, peer

    def _post(self, path: str, body: BaseModel, reply: type[Reply], *, timeout: float | None = None) -> Reply:
        return self._exchange(path, body, reply, timeout=timeout)[0]

    def _exchange(
        self, path: str, body: BaseModel, reply: type[Reply], *, timeout: float | None = None
    ) -> tuple[Reply, bytes | None]:
        headers = {"content-type": "application/json"}
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        try:
            response = self.http.post(path, content=body.model_dump_json(), headers=headers, **extra)
        except httpx.HTTPError as err:  # transport errors and timeouts: the outbox retries
            raise PeerError(f"{self.peer} unreachable ({type(err).__name__})") from err
        certificate = _check_identity(response, self.peer)
        if response.status_code >= 400:
            raise PeerError(f"{self.peer} answered HTTP {response.status_code}: {_public_message(response)}")
        try:
            return reply.model_validate_json(response.content), certificate
        except ValidationError as err:
            version = _version_of(response)
            if version is not None and version != POINTS_WIRE_VERSION:
                raise PeerError(f"{self.peer} answered in {version_refusal(version)}") from err
            raise PeerError(f"{self.peer} answered outside the protocol ({reply.__name__})") from err

    # Every answer must be about transfers this message asked about: an answer that arrives late,
    # in place of a newer message's own (reordered, duplicated), is used only for what it is true
    # about; an answer to another message altogether is refused, as if it had been lost.

    def reserve(self, request: ReserveRequest) -> ReserveReply:
        reply = self._post(PEER_PATHS["reserve"], request, ReserveReply)
        self._answers(reply.results, {i.transfer_id for i in request.items})
        return reply

    def resolve(self, request: ResolveRequest) -> ResolveReply:
        reply = self._post(PEER_PATHS["resolve"], request, ResolveReply)
        self._answers(reply.results, {i.transfer_id for i in request.items})
        return reply

    def decisions(self, request: DecisionRequest) -> DecisionReply:
        reply = self._post(PEER_PATHS["decisions"], request, DecisionReply)
        if len(reply.decisions) != len(reply.decided_at_us):
            raise PeerError(f"{self.peer} answered outside the protocol (DecisionReply)")
        self._answers(reply.decisions, set(request.transfer_ids))
        return reply

    def _answers(self, results: tuple[ItemResult, ...], asked: set[str]) -> None:
        if any(r.transfer_id not in asked for r in results):
            raise PeerError(f"{self.peer} answered another message (transfer ids not asked)")

    def link_open(self, opening: LinkOpening, *, asks: int = _LINK_ASKS) -> LinkAnswer:
        """The peer's answer to this opening. An answer to another opening (an old one arriving late
        in place of this one's) is discarded and the same opening sent again: the responder opens a
        session per opening it receives, and any answer naming this opening is good to finish with."""
        expected = opening_digest(opening.elements)
        for _ in range(asks):
            answer = self._post(PEER_PATHS["link_open"], opening, LinkAnswer, timeout=_SLOW_S)
            if answer.opening_digest == expected:
                return answer
        raise PeerError(f"{self.peer} answered another message (another link opening), {asks} times")

    def link_reveal(self, session_id: str, reveal: LinkReveal) -> LinkRevealReply:
        return self._post(
            f"{PEER_PATHS['link_open']}/{session_id}/reveal", reveal, LinkRevealReply, timeout=_SLOW_S
        )

    def settle_with_certificate(self, statement: SignedStatement) -> tuple[SignedStatement, bytes | None]:
        """Send our statement; the answer and the certificate (DER) of the node that signed it."""
        return self._exchange(PEER_PATHS["settle"], statement, SignedStatement, timeout=_SLOW_S)


def _check_identity(response: httpx.Response, peer: str) -> bytes | None:
    """Raise unless the answering node's certificate names ``peer``; returns that certificate (DER)."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None  # plain HTTP: the server decides whether it accepts that (nodes refuse it by default)
    der = ssl_object.getpeercert(True)
    named = _partner_named(bytes(der)) if der else None
    if named != peer:
        raise PeerError(f"the node that answered is {named or 'not a named partner'}, expected {peer}")
    return bytes(der)


@lru_cache(maxsize=64)
def _partner_named(der: bytes) -> str | None:
    """The partner a verified certificate names (cached: the same peer answers every message)."""
    try:
        return partner_from_certificate(der)
    except PeerIdentityRefused:
        return None


def _version_of(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("version") if isinstance(body, dict) else None


def _public_message(response: httpx.Response) -> str:
    """The peer's public error; of a validation refusal (422) only a wire-version refusal, whose
    text this protocol defines (``wire.version_refusal``); other details may echo message fields."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("detail"), list):
        messages = [str(d.get("msg", "")) for d in body["detail"] if isinstance(d, dict)]
        return next((m.split(", ", 1)[-1][:200] for m in messages if "points wire version" in m), "")
    return str(body.get("error", ""))[:200]
