"""A node's PSI service: the responder endpoints (FastAPI) and the node's run bookkeeping.

Versioned routes under ``/psi/v1``. Bodies are binary ``psi.wire`` frames
(``application/octet-stream``) except the JSON session opening. Errors map to a status and a
public message (never raw exception text from elsewhere, never member data):
protocol errors 400, refusals by a probing guard or of the peer's identity 403, unknown or
expired sessions 404, a reused session id 409, and a malformed request 422 that names fields and
rules but never echoes what was sent (``audit.request_errors``). A protocol error inside a session
aborts it: the run is recorded as aborted and its id, like every closed session's, never reopens.

The peer is the partner its verified mTLS client certificate names (``peer_identity``; serve with
``tls_scope.node_server_config``), not the ``initiator_partner`` its body claims: the per-pair cap,
the mostly-new rule and the consent scope all key on that identity, and each session answers only
the partner that opened it. Every refusal is recorded for audit with the rule that refused it.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from audit.request_errors import install_validation_handler
from participant_node.matching.config import MATCHING_PURPOSES, MatchingConfig
from participant_node.matching.errors import (
    MatchingError,
    MatchingRefused,
    RefusalRule,
    SessionGone,
    SessionReused,
)
from participant_node.matching.member_set import MatchingSet
from participant_node.matching.peer_identity import AuthenticatedPeer, PeerIdentityRefused, authenticate_peer
from participant_node.matching.probing_guard import ProbingGuard
from participant_node.matching.run_record import MatchingRunRecord, RunStatus
from participant_node.matching.session_ledger import SessionLedger
from participant_node.matching.sessions import ResponderSession, SessionRegistry
from policies.purpose import Purpose
from psi.errors import PsiError
from psi.group_engine import GroupEngine
from psi.paillier import generate_keypair
from psi.protocol import PsiResult, Responder
from psi.ristretto255 import Rng
from psi.wire import WIRE_VERSION, Frame, MessageKind, PsiMode, Reveal, SessionParams

if TYPE_CHECKING:
    from participant_node.matching.client import MatchingClient

__all__ = [
    "InitiatedRun",
    "MatchingService",
    "SessionOpening",
    "create_matching_app",
    "pack_frames",
    "unpack_frames",
]

SetProvider = Callable[[Purpose, str], MatchingSet]
RunSink = Callable[[MatchingRunRecord], None]
_LENGTH = struct.Struct(">I")
_LOG = logging.getLogger(__name__)


def pack_frames(frames: list[Frame]) -> bytes:
    """Length-prefixed concatenation of encoded frames (a reply may hold several)."""
    return b"".join(_LENGTH.pack(len(data)) + data for data in (f.encode() for f in frames))


def unpack_frames(blob: bytes) -> Iterator[Frame]:
    offset = 0
    while offset < len(blob):
        (size,) = _LENGTH.unpack_from(blob, offset)
        yield Frame.decode(blob[offset + 4 : offset + 4 + size])
        offset += 4 + size


class SessionOpening(BaseModel):
    """The initiator's JSON request to open a session (sizes are public by design)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = WIRE_VERSION
    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    initiator_partner: str = Field(min_length=1, max_length=128)
    purpose: Purpose
    mode: PsiMode
    reveal: Reveal = Reveal.INITIATOR
    initiator_size: int = Field(ge=0, le=2**63 - 1)  # a count of members: int64 at the edge
    chunk_size: int = Field(ge=1, le=1_048_576)


class MatchingService:
    """Everything a node needs to answer PSI sessions and to account for them.

    Parameters
    ----------
    config
        Guards, timeouts and chunking.
    set_provider
        ``(purpose, peer) -> MatchingSet``: the consented set for that purpose towards that peer.
    guard
        Probing guard with its node-local state.
    on_run
        Called with the audit record of every run (finished or expired).
    now, rng
        Clock and randomness, injectable for tests.
    """

    def __init__(
        self,
        config: MatchingConfig,
        *,
        set_provider: SetProvider,
        guard: ProbingGuard,
        on_run: RunSink | None = None,
        session_ledger: SessionLedger | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None),
        rng: Rng = os.urandom,
        workers: int | None = None,
    ) -> None:
        self.config, self.guard, self.now, self.rng = config, guard, now, rng
        self._set_provider = set_provider
        self._on_run = on_run or (lambda record: None)
        self.engine = GroupEngine(workers)
        self.sessions = SessionRegistry(
            timedelta(seconds=config.session_timeout_s),
            lambda s: self._record(s, RunStatus.EXPIRED),
            ledger=session_ledger,
        )
        for left_open in self.sessions.ledger.abort_unfinished(at=self.now()):
            self._on_run(left_open.run_record(config.partner_id, at=self.now()))

    def open_session(self, opening: SessionOpening, *, connection: Mapping[str, Any]) -> SessionParams:
        """Authenticate the peer, check the request and the guards, create the responder.

        ``connection`` is the request's ASGI scope: the peer is the partner its verified client
        certificate names (``peer_identity``), never just the body's ``initiator_partner``. Every
        refusal is recorded for audit with the rule that refused it.
        """
        peer: AuthenticatedPeer | None = None
        try:
            peer = authenticate_peer(connection, opening.initiator_partner, self.config.peer_authentication)
            return self._open(opening, peer)
        except MatchingRefused as refusal:
            self._record_refusal(opening, peer, refusal)
            raise

    def _admit(self, opening: SessionOpening, peer: str, now: datetime) -> MatchingSet:
        """The rules a session must pass before any group work; our consented set for ``peer``."""
        if opening.version != WIRE_VERSION:
            raise MatchingError(f"protocol version {opening.version} unsupported (this node: {WIRE_VERSION})")
        if opening.purpose not in MATCHING_PURPOSES:
            raise MatchingRefused(
                f"purpose {opening.purpose} does not allow matching", rule=RefusalRule.PURPOSE
            )
        if self.config.allowed_peers is not None and peer not in self.config.allowed_peers:
            raise MatchingRefused(
                f"partner {peer} is not allowed to match with this node", rule=RefusalRule.PEER_NOT_ALLOWED
            )
        self.guard.check_peer_size(peer, opening.initiator_size)
        matching_set = self._set_provider(opening.purpose, peer)
        self.guard.check(peer, matching_set.items, opening.initiator_size, now=now)
        if opening.mode == PsiMode.SUM and matching_set.values is None:
            raise MatchingRefused(
                "sum mode needs a points_balance column in this node's members file",
                rule=RefusalRule.NO_VALUES,
            )
        return matching_set

    def _open(self, opening: SessionOpening, authenticated: AuthenticatedPeer) -> SessionParams:
        self.sessions.check_new(opening.session_id)  # before any guard counts it or any work is done
        peer, now = authenticated.partner, self.now()
        matching_set = self._admit(opening, peer, now)
        key = generate_keypair(self.config.paillier_bits, self.rng) if opening.mode == PsiMode.SUM else None
        params = SessionParams(
            session_id=opening.session_id,
            mode=opening.mode,
            reveal=opening.reveal,
            initiator_size=opening.initiator_size,
            responder_size=len(matching_set.items),
            chunk_size=opening.chunk_size,
            paillier_n=key.public_key.n if key else None,
        )
        responder = Responder(
            matching_set.items,
            params,
            engine=self.engine,
            rng=self.rng,
            values=matching_set.values if key else None,
            paillier_key=key,
        )
        self.sessions.add(
            ResponderSession(
                params,
                peer,
                str(opening.purpose),
                matching_set,
                responder,
                now,
                authentication=authenticated.method,
            )
        )
        self.guard.record(peer, matching_set.items, now=now)  # counted at opening: aborted runs count too
        return params

    def _record_refusal(
        self, opening: SessionOpening, peer: AuthenticatedPeer | None, refusal: MatchingRefused
    ) -> None:
        # The claimed id is not recorded: it is whatever the peer wrote, the certificate is what we know.
        certified = refusal.certified if isinstance(refusal, PeerIdentityRefused) else None
        self._on_run(
            MatchingRunRecord(
                session_id=opening.session_id,
                role="responder",
                partner=self.config.partner_id,
                peer=peer.partner if peer else certified or "unauthenticated",
                purpose=str(opening.purpose),
                mode=str(opening.mode),
                own_set_size=None,
                peer_set_size=opening.initiator_size,
                result_cardinality=None,
                consent_snapshot_hash=None,
                at=self.now(),
                status=RunStatus.REFUSED,
                refusal=str(refusal.rule),
                peer_authentication=peer.method if peer else None,
            )
        )

    def session(self, session_id: str, *, connection: Mapping[str, Any]) -> ResponderSession:
        """An open session, only to the partner that opened it (same certificate identity)."""
        session = self.sessions.get(session_id, now=self.now())
        authenticate_peer(connection, session.peer, self.config.peer_authentication)
        return session

    def receive_frame(self, session_id: str, data: bytes, *, connection: Mapping[str, Any]) -> list[Frame]:
        """Feed the peer's frame to its session; a protocol error aborts the session."""
        session = self.session(session_id, connection=connection)
        try:
            return session.receive(Frame.decode(data))
        except PsiError:
            self._abort(session_id)
            raise

    def outgoing_frame(
        self, session_id: str, kind: MessageKind, chunk: int, *, connection: Mapping[str, Any]
    ) -> Frame:
        """One of our frames for the peer; a protocol error computing it aborts the session."""
        session = self.session(session_id, connection=connection)
        try:
            return session.frame(kind, chunk)
        except PsiError:
            self._abort(session_id)
            raise

    def _abort(self, session_id: str) -> None:
        session = self.sessions.pop(session_id)
        if session is not None:
            self._record(session, RunStatus.ABORTED)

    def close_session(self, session_id: str, *, connection: Mapping[str, Any]) -> None:
        self.session(session_id, connection=connection)
        session = self.sessions.pop(session_id)
        if session is None:
            raise SessionGone(f"session {session_id} is unknown, finished or timed out")
        self._record(session, RunStatus.COMPLETED)

    def _record(self, session: ResponderSession, status: RunStatus) -> None:
        result = _finished(session) if status == RunStatus.COMPLETED else None
        if result is None:
            status = RunStatus.EXPIRED if status == RunStatus.EXPIRED else RunStatus.ABORTED
        self.sessions.ledger.ended(session.params.session_id, status, at=self.now())
        self._on_run(
            MatchingRunRecord(
                session_id=session.params.session_id,
                role="responder",
                partner=self.config.partner_id,
                peer=session.peer,
                purpose=session.purpose,
                mode=str(session.params.mode),
                own_set_size=session.params.responder_size,
                peer_set_size=session.params.initiator_size,
                result_cardinality=result.cardinality if result else None,
                consent_snapshot_hash=session.matching_set.consent_snapshot_hash,
                at=self.now(),
                status=status,
                peer_authentication=session.authentication,
            )
        )

    def initiate(
        self,
        client: MatchingClient,
        *,
        peer: str,
        purpose: Purpose = Purpose.CROSS_BRAND_MATCHING,
        mode: PsiMode = PsiMode.INTERSECTION,
        reveal: Reveal = Reveal.INITIATOR,
    ) -> InitiatedRun:
        """Run a session as initiator against ``peer``; the same guards apply to our side."""
        matching_set = self._set_provider(purpose, peer)
        now = self.now()

        def check_peer(params: SessionParams) -> None:
            self.guard.check(peer, matching_set.items, params.responder_size, now=now)
            self.guard.record(peer, matching_set.items, now=now)

        result = client.run(
            matching_set.items,
            purpose=purpose,
            mode=mode,
            reveal=reveal,
            chunk_size=self.config.chunk_size,
            engine=self.engine,
            rng=self.rng,
            check_peer=check_peer,
            peer=peer,
        )
        record = MatchingRunRecord(
            session_id="",
            role="initiator",
            partner=self.config.partner_id,
            peer=peer,
            purpose=str(purpose),
            mode=str(mode),
            own_set_size=result.initiator_size,
            peer_set_size=result.responder_size,
            result_cardinality=result.cardinality,
            consent_snapshot_hash=matching_set.consent_snapshot_hash,
            at=self.now(),
        )
        self._on_run(record)
        matched = [matching_set.member_ids[i] for i in result.matched_indices or ()]
        return InitiatedRun(result, matched, record)

    def close(self) -> None:
        self.engine.close()


def _finished(session: ResponderSession) -> PsiResult | None:
    """The responder's result if the protocol ran to its end, else None (the run was aborted)."""
    responder = session.responder
    if not responder.answered_all:
        return None  # closed before the initiator's elements were all received and answered
    if session.params.mode == PsiMode.SUM and responder.intersection_sum is None:
        return None
    try:
        return responder.result()
    except PsiError:  # closed before the initiator's final messages arrived
        return None


@dataclass(frozen=True)
class InitiatedRun:
    """The initiator's outcome: what the protocol revealed and, node-local, which members matched."""

    result: PsiResult
    matched_member_ids: list[str]
    record: MatchingRunRecord


_STATUS = (
    (MatchingRefused, 403),
    (SessionGone, 404),
    (SessionReused, 409),
    (MatchingError, 400),
    (PsiError, 400),
)


def _error_response(err: Exception) -> JSONResponse:
    status = next(code for kind, code in _STATUS if isinstance(err, kind))
    return JSONResponse({"error": str(err), "type": type(err).__name__}, status_code=status)


def create_matching_app(service: MatchingService) -> FastAPI:
    """The responder's HTTP API around ``service``; the engine's threads stop at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        service.close()

    app = FastAPI(title="loyalfed node PSI", version=str(WIRE_VERSION), lifespan=lifespan)
    install_validation_handler(app)
    for kind, _code in _STATUS:
        app.add_exception_handler(kind, lambda _request, err: _error_response(err))

    @app.post("/psi/v1/sessions")
    def open_session(opening: SessionOpening, request: Request) -> Response:
        params = service.open_session(opening, connection=request.scope)
        return Response(params.to_json(), media_type="application/json")

    @app.put("/psi/v1/sessions/{session_id}/frames")
    def put_frame(
        session_id: str, body: Annotated[bytes, Body(media_type="application/octet-stream")], request: Request
    ) -> Response:
        replies = service.receive_frame(session_id, body, connection=request.scope)
        return Response(pack_frames(replies), media_type="application/octet-stream")

    @app.get("/psi/v1/sessions/{session_id}/frames/{kind}/{chunk}")
    def get_frame(session_id: str, kind: int, chunk: int, request: Request) -> Response:
        try:
            message = MessageKind(kind)
        except ValueError:
            raise MatchingError(f"unknown message kind {kind}") from None
        frame = service.outgoing_frame(session_id, message, chunk, connection=request.scope)
        return Response(frame.encode(), media_type="application/octet-stream")

    @app.delete("/psi/v1/sessions/{session_id}", status_code=204)
    def close_session(session_id: str, request: Request) -> Response:
        service.close_session(session_id, connection=request.scope)
        return Response(status_code=204)

    @app.middleware("http")
    async def no_raw_errors(request: Request, call_next: Callable[[Request], Any]) -> Any:
        # Process boundary: anything unexpected becomes a typed, content-free 500.
        try:
            return await call_next(request)
        except Exception as err:
            _LOG.exception("PSI request failed")
            return JSONResponse({"error": "internal error", "type": type(err).__name__}, status_code=500)

    return app
