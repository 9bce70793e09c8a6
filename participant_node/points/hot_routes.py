"""The message-rate points endpoints served straight from ASGI, in front of the FastAPI app.

Four endpoints carry every transfer: the operator's ``POST /points/v1/transfers`` (one transfer per
request) and ``/transfers/batch``, and the peers' ``/peer/reserve`` and ``/peer/resolve``; a fifth,
``GET /points/v1/status``, is what a front end polls to see transfers land. FastAPI spends more
per request on routing, dependency solving and its middleware stack than these requests' share of
a batch costs, so ``HotRoutes`` answers exactly those (method and path) itself and passes
everything else to the app. The FastAPI router keeps the same routes (the API's
documentation, and the node service that mounts it); both call the same functions of ``api``:
the same identity checks on the verified mTLS certificate, the same request models, the same
domain calls and the same error mapping (403 ``detail``, 422 ``detail`` list, 4xx/502
``error``, an unexpected failure a content-free 500).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from anyio import to_thread
from pydantic import BaseModel, ValidationError

from participant_node.points import api
from participant_node.points.service import PointsService
from participant_node.points.wire import ReserveRequest, ResolveRequest

__all__ = ["HotRoutes"]

_LOG = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
_Answer = tuple[int, bytes]
_Handler = Callable[[Scope, bytes], Awaitable[_Answer]]


class HotRoutes:
    """ASGI app: the transfer endpoints and the status answered directly, the rest by ``app``."""

    def __init__(self, app: Asgi, service: PointsService, *, prefix: str = "/points/v1") -> None:
        self.app, self.service = app, service
        self._routes: dict[tuple[str, str], _Handler] = {
            ("POST", f"{prefix}/transfers"): self._transfer,
            ("POST", f"{prefix}/transfers/batch"): self._transfer_batch,
            ("POST", f"{prefix}/peer/reserve"): self._reserve,
            ("POST", f"{prefix}/peer/resolve"): self._resolve,
            ("GET", f"{prefix}/status"): self._status,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        try:
            status, payload = await handler(scope, body)
        except Exception as err:  # process boundary: a typed, content-free 500 (as the app's handler)
            _LOG.error("points request %s failed", scope["path"], exc_info=err)
            status, payload = 500, _dumps({"error": "internal error", "type": type(err).__name__})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _transfer(self, scope: Scope, body: bytes) -> _Answer:
        if (refused := _operator_refusal(scope, self.service)) is not None:
            return refused
        parsed = _parse(api.TransferIn, body)
        if not isinstance(parsed, api.TransferIn):
            return parsed
        try:
            receipts = await self.service.transfer_async(api.requests_of((parsed,)))
        except api.PUBLIC_ERRORS as err:
            return _error(err)
        return 200, _dumps(receipts[0].to_json())

    async def _transfer_batch(self, scope: Scope, body: bytes) -> _Answer:
        if (refused := _operator_refusal(scope, self.service)) is not None:
            return refused
        parsed = _parse(api.TransferBatchIn, body)
        if not isinstance(parsed, api.TransferBatchIn):
            return parsed
        requests = api.requests_of(parsed.items)
        return await _in_thread(lambda: {"receipts": [r.to_json() for r in self.service.transfer(requests)]})

    async def _status(self, scope: Scope, _: bytes) -> _Answer:
        if (refused := _operator_refusal(scope, self.service)) is not None:
            return refused
        return await _in_thread(self.service.status)

    async def _reserve(self, scope: Scope, body: bytes) -> _Answer:
        return await self._peer_call(scope, body, ReserveRequest, self.service.destination.reserve)

    async def _resolve(self, scope: Scope, body: bytes) -> _Answer:
        return await self._peer_call(scope, body, ResolveRequest, self.service.destination.resolve)

    async def _peer_call(
        self, scope: Scope, body: bytes, model: type[BaseModel], handle: Callable[[str, Any], Any]
    ) -> _Answer:
        """A peer-only endpoint: the caller's certificate names a peer, the body parses as ``model``."""
        peer = api.peer_of(scope, self.service)
        if peer is None:
            return 403, _dumps({"detail": api.PEER_ONLY})
        parsed = _parse(model, body)
        if not isinstance(parsed, model):
            return parsed
        return await _in_thread(lambda: handle(peer[0], parsed))


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _operator_refusal(scope: Scope, service: PointsService) -> _Answer | None:
    if api.is_operator(scope, service):
        return None
    return 403, _dumps({"detail": api.OPERATOR_ONLY})


def _parse(model: type[BaseModel], body: bytes) -> Any:
    """The validated body, or a 422 answer shaped as FastAPI's (``detail``: errors located in the body)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        detail = [
            {"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"], "input": e.get("input")}
            for e in err.errors(include_url=False, include_context=False)
        ]
        return 422, _dumps({"detail": detail})


async def _in_thread(call: Callable[[], Any]) -> _Answer:
    """A blocking domain call on a worker thread (as FastAPI runs sync endpoints); its answer as JSON."""
    try:
        answer = await to_thread.run_sync(call)
    except api.PUBLIC_ERRORS as err:
        return _error(err)
    if isinstance(answer, BaseModel):
        return 200, answer.model_dump_json().encode()
    return 200, _dumps(answer)


def _error(err: Exception) -> _Answer:
    response = api.refusal(err)  # type: ignore[arg-type]
    return response.status_code, bytes(response.body)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
