"""Real HTTPS on loopback for the PSI service: uvicorn in a thread, certificates from the deploy script."""

from __future__ import annotations

import importlib.util
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import uvicorn


def _prefer_repository_packages() -> None:
    """Make ``import participant_node`` / ``psi`` mean the packages, not the test folders.

    The root conftest puts tests/ on sys.path, where tests/participant_node/ and tests/psi/ (no
    __init__.py) are found as empty namespace packages before the editable install's finder runs.
    Put the repository root first and forget namespace stand-ins imported before we got here.
    """
    root = str(Path(__file__).resolve().parents[3])
    if root not in sys.path:
        sys.path.insert(0, root)
    for name in [n for n in sys.modules if n.split(".")[0] in ("participant_node", "psi")]:
        if getattr(sys.modules[name], "__file__", None) is None:
            del sys.modules[name]


_prefer_repository_packages()

from participant_node.matching.federation_pki import FederationCertificates  # noqa: E402
from participant_node.matching.tls_scope import NodeTls, node_server_config  # noqa: E402


def load_certificate_generator() -> ModuleType:
    """tests/deploy/one_machine_certificates.py is a standalone script (no package): load it by path."""
    path = Path(__file__).resolve().parents[3] / "tests" / "deploy" / "one_machine_certificates.py"
    spec = importlib.util.spec_from_file_location("generate_certificates", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The federation's certificate folder, as tests/deploy/one_machine_certificates.py writes it.
Pki = FederationCertificates


# careplus answers (its certificate also names the loopback host); the others only initiate.
PARTNERS = {"careplus": ["localhost", "127.0.0.1"], "freshmart": [], "fuelgo": []}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    load_certificate_generator().generate_certificates(folder, ["127.0.0.1"], partners=PARTNERS, days=1)
    return Pki(folder)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve(pki: Pki) -> Iterator:
    """``serve(app) -> base_url``: run an ASGI app on loopback until the test ends.

    By default as careplus's node over mTLS (``node_server_config``) with the session's ``pki``;
    ``node=NodeTls(...)`` serves with other certificates; ``tls=False`` serves plain HTTP.
    """
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app, *, tls: bool = True, node: NodeTls | None = None) -> str:
        port = _free_port()
        options = {"port": port, "log_level": "warning", "timeout_graceful_shutdown": 1}
        if tls:
            node = node or pki.node_tls("careplus")
            config = node_server_config(app, tls=node, **options)
        else:
            config = uvicorn.Config(app, host="127.0.0.1", **options)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def client_tls(pki: Pki) -> ssl.SSLContext:
    """freshmart's node, connecting with its own certificate."""
    return pki.client_context("freshmart")
