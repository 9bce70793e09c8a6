"""The node's points endpoints: a FastAPI ``APIRouter`` the node service mounts (``/points/v1``).

Two audiences, both identified by the verified mTLS client certificate (``tls_scope`` puts it in the
ASGI scope; ``peer_identity`` reads the partner it names):

- peers (another partner's node): ``/points/v1/peer/…`` — reserve, resolve, decisions, link,
  settlements. The peer is the certificate's partner, never a field of the body.
- this node's own operator and member-facing front end (a client holding this partner's own
  certificate): transfers, balances, history, linking, settlement, recovery.

Errors map to a status and a public message (never raw exception text, never member data):
refusals 403/409, unknown things 404, bad input 400/422, an unreachable peer 502.
"""

import ssl
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from participant_node.matching.peer_identity import PeerIdentityRefused, partner_from_certificate
from participant_node.points.errors import LinkError, PeerError, PointsError
from participant_node.points.service import PointsService
from participant_node.points.source_side import TransferRequest
from participant_node.points.transfer_ids import new_transfer_id
from participant_node.points.wire import (
    TRANSFER_ID_PATTERN,
    DecisionReply,
    DecisionRequest,
    LinkAnswer,
    LinkOpening,
    LinkReveal,
    LinkRevealReply,
    ReserveReply,
    ReserveRequest,
    ResolveReply,
    ResolveRequest,
    SignedStatement,
)
from policies.errors import PolicyError

__all__ = [
    "OPERATOR_ONLY",
    "PEER_ONLY",
    "PUBLIC_ERRORS",
    "TransferBatchIn",
    "TransferIn",
    "create_points_router",
    "is_operator",
    "peer_of",
    "refusal",
    "requests_of",
]

T = TypeVar("T")
_FROZEN = ConfigDict(frozen=True, extra="forbid")
# Expected failures of a domain call: each maps to a status and a public message (``refusal``).
PUBLIC_ERRORS = (PeerError, LinkError, PointsError, PolicyError)
PEER_ONLY = "points peer endpoints answer partner nodes over mutual TLS only"
OPERATOR_ONLY = "this endpoint answers this node's own operator certificate only"


class TransferIn(BaseModel):
    model_config = _FROZEN
    member_id: str = Field(min_length=1, max_length=128)
    to: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    points: int = Field(gt=0, le=10**12)
    transfer_id: str | None = Field(default=None, pattern=TRANSFER_ID_PATTERN)


class TransferBatchIn(BaseModel):
    model_config = _FROZEN
    items: tuple[TransferIn, ...] = Field(min_length=1, max_length=5_000)


class LinkIn(BaseModel):
    model_config = _FROZEN
    peer: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")


class SettleIn(BaseModel):
    model_config = _FROZEN
    peer: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    period_start: datetime
    period_end: datetime


def _certificate(scope: Any) -> tuple[str | None, bytes | None]:
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    return _identity(chain[0]) if chain else (None, None)


def peer_of(scope: Any, service: PointsService) -> tuple[str, bytes | None] | None:
    """The partner node a request's verified certificate names (and the certificate, DER); None
    for this node's own certificate or one that names no partner."""
    partner, der = _certificate(scope)
    if partner is None or partner == service.partner:
        return None
    return partner, der


def is_operator(scope: Any, service: PointsService) -> bool:
    """Whether a request came with this node's own (operator) certificate."""
    return _certificate(scope)[0] == service.partner


def requests_of(items: tuple[TransferIn, ...]) -> list[TransferRequest]:
    return [TransferRequest(i.transfer_id or new_transfer_id(), i.member_id, i.to, i.points) for i in items]


@lru_cache(maxsize=256)
def _identity(pem: str) -> tuple[str | None, bytes | None]:
    """The partner a verified certificate names, and its DER form. The TLS layer verified the
    certificate before the request reached us, so this parse is a pure function of the PEM text:
    cached, a connection's requests do not re-parse the same certificate each time."""
    try:
        return partner_from_certificate(pem), ssl.PEM_cert_to_DER_cert(pem)
    except PeerIdentityRefused:
        return None, None


def _public(call: Callable[[], T]) -> T | JSONResponse:
    """Run a domain call; expected failures become a status and a public message."""
    try:
        return call()
    except PUBLIC_ERRORS as err:
        return refusal(err)


def refusal(err: PeerError | LinkError | PointsError | PolicyError) -> JSONResponse:
    if isinstance(err, PeerError):
        return JSONResponse({"error": str(err)}, status_code=502)
    if isinstance(err, LinkError):
        return JSONResponse({"error": str(err)}, status_code=409)
    return JSONResponse({"error": str(err)}, status_code=400)


def _wire(call: Callable[[], BaseModel]) -> Response:
    """A peer message's answer, serialised once by its own model. Returning a ``Response`` skips
    FastAPI's re-validation of the returned model against ``response_model`` (which still
    documents the route): the answer was built as that model already."""
    answer = _public(call)
    if isinstance(answer, Response):
        return answer
    return Response(answer.model_dump_json(), media_type="application/json")


def _json(call: Callable[[], Any]) -> Response:
    """An operator answer (plain JSON types) without FastAPI's ``jsonable_encoder`` walk."""
    answer = _public(call)
    return answer if isinstance(answer, Response) else JSONResponse(answer)


def create_points_router(service: PointsService) -> APIRouter:
    """The points endpoints around ``service``."""
    router = APIRouter(prefix="/points/v1", tags=["points"])

    # Async (they only read the verified certificate): a sync dependency would cost every request
    # a hop to a worker thread.
    async def peer(request: Request) -> tuple[str, bytes | None]:
        identity = peer_of(request.scope, service)
        if identity is None:
            raise HTTPException(403, PEER_ONLY)
        return identity

    async def operator(request: Request) -> None:
        if not is_operator(request.scope, service):
            raise HTTPException(403, OPERATOR_ONLY)

    _register_peer_routes(router, service, Annotated[tuple[str, bytes | None], Depends(peer)])
    _register_operator_routes(router, service, Depends(operator))
    return router


def _register_peer_routes(router: APIRouter, service: PointsService, Peer: Any) -> None:
    @router.post("/peer/reserve", response_model=ReserveReply)
    def reserve(body: ReserveRequest, peer: Peer) -> Any:
        return _wire(lambda: service.destination.reserve(peer[0], body))

    @router.post("/peer/resolve", response_model=ResolveReply)
    def resolve(body: ResolveRequest, peer: Peer) -> Any:
        return _wire(lambda: service.destination.resolve(peer[0], body))

    @router.post("/peer/decisions", response_model=DecisionReply)
    def decisions(body: DecisionRequest, peer: Peer) -> Any:
        return _wire(lambda: service.source.decisions(peer[0], body.transfer_ids))

    @router.post("/peer/link", response_model=LinkAnswer)
    def link_open(body: LinkOpening, peer: Peer) -> Any:
        return _public(lambda: service.links.open(peer[0], body))

    @router.post("/peer/link/{session_id}/reveal", response_model=LinkRevealReply)
    def link_reveal(session_id: str, body: LinkReveal, peer: Peer) -> Any:
        return _public(lambda: service.links.reveal(peer[0], session_id, body))

    @router.post("/peer/settlements", response_model=SignedStatement)
    def settlements(body: SignedStatement, peer: Peer) -> Any:
        return _public(lambda: service.settlements.answer(peer[0], body, peer[1]))


def _register_operator_routes(router: APIRouter, service: PointsService, operator: Any) -> None:
    @router.post("/transfers", dependencies=[operator])
    async def transfer(body: TransferIn) -> Any:
        # Async: the request waits for its batch without a worker thread of its own (a thread
        # hop per request cost more than the request's share of the batch).
        try:
            receipts = await service.transfer_async(requests_of((body,)))
        except PUBLIC_ERRORS as err:
            return refusal(err)
        return JSONResponse(receipts[0].to_json())

    @router.post("/transfers/batch", dependencies=[operator])
    def transfer_batch(body: TransferBatchIn) -> Any:
        return _json(lambda: {"receipts": [r.to_json() for r in service.transfer(requests_of(body.items))]})

    @router.get("/members/{member_id}/balance", dependencies=[operator])
    def balance(member_id: str) -> Any:
        return _public(lambda: service.balance(member_id))

    @router.get("/members/{member_id}/history", dependencies=[operator])
    def history(member_id: str) -> Any:
        return _public(lambda: {"transfers": service.history(member_id)})

    @router.post("/links", dependencies=[operator])
    def link(body: LinkIn) -> Any:
        return _public(lambda: service.link(body.peer).to_json())

    @router.post("/settlements", dependencies=[operator])
    def settle(body: SettleIn) -> Any:
        return _public(lambda: service.settle(body.peer, body.period_start, body.period_end))

    @router.post("/recover", dependencies=[operator])
    def recover() -> Any:
        return _public(lambda: service.recover().to_json())

    @router.get("/status", dependencies=[operator])
    def status() -> Any:
        return _public(service.status)

    @router.get("/ledger/verify", dependencies=[operator])
    def verify() -> Any:
        def check() -> dict[str, Any]:
            result = service.ledger.verify()
            return {
                "ok": result.ok,
                "transfers": result.transfers,
                "pending": result.pending,
                "problems": list(result.problems),
            }

        return _public(check)
