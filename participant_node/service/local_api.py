"""The node service's loopback endpoint for its own ClientApp: ``POST /local/v1/job-message``.

The SuperNode starts a fresh ClientApp process per message; that process stays import-light and
forwards the message here, to the warm service that holds the gate, the data cache and torch. The
caller proves it runs on this node with the node-local secret (``X-Loyalfed-Node-Secret``, compared
in constant time); the endpoint binds to 127.0.0.1 only. ``X-Loyalfed-Flower-App`` names the app the
ClientApp process runs (the sha256 its approving launcher checked): ``serve`` reads it from
``RUNNING_APP`` while it serves the message, so the gate can hold it to the job's signed policy.

Body: the Flower ``Message`` as its protobuf bytes; reply: the reply's ``RecordDict`` protobuf bytes
(the ClientApp wraps it in ``Message(content, reply_to=msg)``). A node error is a 422 with the
node's own safe message; anything else a content-free 500.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from flwr.app import Message, RecordDict
from flwr.common.serde import message_from_proto, recorddict_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # type: ignore[attr-defined]
from google.protobuf.message import DecodeError

from participant_node.errors import NodeError

__all__ = ["APP_HEADER", "JOB_MESSAGE_PATH", "RUNNING_APP", "SECRET_HEADER", "create_local_app"]

JOB_MESSAGE_PATH = "/local/v1/job-message"
SECRET_HEADER = "X-Loyalfed-Node-Secret"
APP_HEADER = "X-Loyalfed-Flower-App"
# The Flower App (FAB sha256) of the ClientApp whose message is being served; None: not told.
RUNNING_APP: ContextVar[str | None] = ContextVar("running_flower_app", default=None)
_LOG = logging.getLogger(__name__)


def create_local_app(serve: Callable[[Message], RecordDict], secret: str) -> FastAPI:
    """The loopback app; ``serve`` turns a job message into the reply's content."""
    app = FastAPI(title="loyalfed node (local)", openapi_url=None, docs_url=None, redoc_url=None)
    expected = secret.encode("ascii")

    @app.post(JOB_MESSAGE_PATH)
    def job_message(
        body: Annotated[bytes, Body(media_type="application/octet-stream")],
        secret_header: Annotated[str, Header(alias=SECRET_HEADER)] = "",
        app_header: Annotated[str, Header(alias=APP_HEADER)] = "",
    ) -> Response:
        if not hmac.compare_digest(secret_header.encode("ascii", "replace"), expected):
            return _error(401, "node-local secret missing or wrong")
        try:
            proto = ProtoMessage()
            proto.ParseFromString(body)
            message = message_from_proto(proto)
        except (DecodeError, ValueError, TypeError, KeyError):
            return _error(400, "body is not a Flower message")
        running = RUNNING_APP.set(app_header.strip().lower() or None)
        try:
            content = serve(message)
        except NodeError as err:
            return _error(422, str(err))
        finally:
            RUNNING_APP.reset(running)
        return Response(
            recorddict_to_proto(content).SerializeToString(), media_type="application/octet-stream"
        )

    @app.middleware("http")
    async def no_raw_errors(request: Request, call_next: Callable[[Request], Any]) -> Any:
        # Process boundary: anything unexpected becomes a content-free 500, logged here.
        try:
            return await call_next(request)
        except Exception:
            _LOG.exception("local job message failed")
            return _error(500, "internal error")

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)
