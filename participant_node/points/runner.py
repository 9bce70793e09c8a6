"""A standalone points node: the points router alone, served over mTLS (tests, benchmarks, small sites).

``python -m participant_node.points.runner --settings node.json --port 8443`` builds the service,
runs a recovery pass, starts the delivery pump and serves ``/points/v1`` with uvicorn, requiring a
client certificate from the federation CA (``tls_scope.node_server_config``). The full node
service mounts the same router next to its other endpoints.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from participant_node.matching.tls_scope import PeerCertificateHttpToolsProtocol, node_server_config
from participant_node.points.api import create_points_router
from participant_node.points.hot_routes import HotRoutes
from participant_node.points.node_settings import load_settings
from participant_node.points.service import PointsService

__all__ = ["create_points_app", "main"]

_LOG = logging.getLogger(__name__)


def create_points_app(service: PointsService, *, start: bool = True) -> HotRoutes:
    """The points router's FastAPI app behind ``HotRoutes`` (the transfer endpoints answered
    without FastAPI's per-request machinery); the service starts with the app and closes with it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if start:
            service.start()
        yield
        service.close()

    app = FastAPI(title=f"loyalfed points node {service.partner}", lifespan=lifespan)
    app.include_router(create_points_router(service))

    @app.get("/points/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "partner": service.partner}

    async def no_raw_errors(request: Request, err: Exception) -> JSONResponse:
        # Process boundary: anything unexpected becomes a typed, content-free 500. An exception
        # handler rather than an HTTP middleware: Starlette's BaseHTTPMiddleware streams every
        # response through a task and a memory channel, a cost paid on every request.
        _LOG.error("points request %s failed", request.url.path, exc_info=err)
        return JSONResponse({"error": "internal error", "type": type(err).__name__}, status_code=500)

    app.add_exception_handler(Exception, no_raw_errors)
    return HotRoutes(app, service)


def _spare_the_collector() -> None:
    """Move what the process holds before serving (modules, the schema, the settings, the
    agreements) out of the cyclic collector's reach, and let it run less often (this process only:
    a test or the full node service that builds the app keeps its own collector settings).

    Every transfer allocates hundreds of short-lived containers; at the default thresholds
    (700, 10, 10) the collector ran every few hundred allocations and its full passes walked every
    object the process had loaded (~4 % of a node's CPU under load). Frozen objects stay alive and
    are still freed by reference counting; cycles among request objects are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a node's points endpoints over mTLS.")
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import uvicorn

    settings = load_settings(args.settings)
    service = PointsService(settings)
    tls = service.pki.node_tls(settings.partner_id)
    config = node_server_config(
        create_points_app(service),
        tls=tls,
        host=args.host,
        port=args.port,
        http=PeerCertificateHttpToolsProtocol,
        loop="uvloop",
        log_level="warning",
        # Peers and the operator's front end keep their TLS connections open between messages:
        # a handshake (ECDHE + two certificate verifications) costs more than a whole transfer.
        timeout_keep_alive=120,
        timeout_graceful_shutdown=2,
        backlog=2048,
        limit_concurrency=4096,
    )
    _spare_the_collector()
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
