"""A real coordinator on loopback (uvicorn, the real app and store) with every role populated,
and Debian's Chromium driven by Playwright to look at it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.console.browser import RequestLog, chromium_browser, chromium_path
from tests.coordinator.service.coordinator_federation import Federation, policy_document, populate

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@dataclass
class Console:
    url: str
    federation: Federation
    state_dir: Path

    def token(self, who: str) -> str:
        return self.federation.admin if who == "admin" else self.federation.tokens[who]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# One coordinator and one browser for every console test module (package scope): each start costs
# seconds of the suite's time budget.
@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    from coordinator.service import CoordinatorSettings, create_app

    state = tmp_path_factory.mktemp("coordinator") / "state"
    app = create_app(CoordinatorSettings(state_dir=state, superlink=False))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the coordinator did not start within 60 s")
        time.sleep(0.1)
    client = httpx.Client(base_url=url, timeout=30)
    federation = populate(client, (state / "admin.token").read_text().strip())
    reply = federation.call("analyst", "POST", "/policies", json={"document": policy_document()})
    assert reply.status_code == 201, reply.text
    try:
        yield Console(url, federation, state)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=15)


# Module scope, not package: Playwright's sync API allows one running instance per process, and the
# story module launches its own browser (it trusts the federation's pinned certificate).
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    with chromium_browser() as launched:
        yield launched


@pytest.fixture
def requests_seen() -> RequestLog:
    return RequestLog()
