"""Two points nodes served over mutual TLS on loopback, uvicorn in threads of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from loyalfed.points_federation import LOOPBACK, NodePair
from participant_node.matching.tls_scope import node_server_config
from participant_node.points.runner import create_points_app
from participant_node.points.service import PointsService

__all__ = ["serving"]


@contextmanager
def serving(
    pair: NodePair, services: dict[str, PointsService], *, start: bool = True, wait_s: float = 20.0
) -> Iterator[None]:
    """Each partner's points app on its port of ``pair`` (``start``: the service starts with it, its
    recovery pass and outbox pump included) until the block ends."""
    servers = []
    for partner, service in services.items():
        config = node_server_config(
            create_points_app(service, start=start),
            tls=service.pki.node_tls(partner),
            host=LOOPBACK,
            port=pair.ports[partner],
            log_level="warning",
        )
        servers.append(uvicorn.Server(config))
        threading.Thread(target=servers[-1].run, daemon=True).start()
    deadline = time.monotonic() + wait_s
    while not all(s.started for s in servers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"points nodes did not start within {wait_s} s")
        time.sleep(0.02)
    try:
        yield
    finally:
        for server in servers:
            server.should_exit = True
        time.sleep(0.5)
