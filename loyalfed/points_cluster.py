"""Two points nodes as separate processes on loopback, and an operator client for each (mTLS).

Each node runs ``python -m participant_node.points.runner`` with its settings; ``kill`` sends
SIGKILL (a crash: nothing is flushed or closed) and ``start`` brings it back on the same port and
database. The operator client presents the node's own partner certificate, as a partner's
front end or its operator would.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from loyalfed.points_federation import LOOPBACK, NodePair
from participant_node.matching.federation_pki import FederationCertificates

__all__ = ["PointsCluster"]


class PointsCluster:
    def __init__(self, pair: NodePair, *, log_dir: Path) -> None:
        self.pair = pair
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._clients: dict[str, httpx.Client] = {}

    def start(self, partner: str, *, wait_s: float = 120.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{partner}.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.processes[partner] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "participant_node.points.runner",
                "--settings",
                str(self.pair.settings_paths[partner]),
                "--port",
                str(self.pair.ports[partner]),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self._wait_ready(partner, wait_s)

    def _wait_ready(self, partner: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.processes[partner].poll() is not None:
                raise RuntimeError(f"points node {partner} exited with {self.processes[partner].returncode}")
            try:
                if self.client(partner).get("/points/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"points node {partner} did not start within {wait_s} s")

    def kill(self, partner: str) -> None:
        process = self.processes.pop(partner)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self._drop_client(partner)

    def stop(self) -> None:
        for partner in list(self.processes):
            process = self.processes.pop(partner)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for partner in list(self._clients):
            self._drop_client(partner)

    def _drop_client(self, partner: str) -> None:
        client = self._clients.pop(partner, None)
        if client is not None:
            client.close()

    def tls_context(self, partner: str) -> ssl.SSLContext:
        """Client-side mTLS for ``partner``'s operator: the federation CA and ``partner``'s own key."""
        pki = FederationCertificates(self.pair.pki_dir)
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.certificate(partner)), str(pki.key(partner)))
        return context

    def client(self, partner: str) -> httpx.Client:
        """An HTTPS client to ``partner``'s node presenting ``partner``'s own certificate."""
        if partner not in self._clients:
            context = self.tls_context(partner)
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            self._clients[partner] = httpx.Client(
                base_url=f"https://{LOOPBACK}:{self.pair.ports[partner]}",
                verify=context,
                timeout=60,
                limits=limits,
            )
        return self._clients[partner]

    def call(self, partner: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client(partner).request(method, path, **kwargs)
        if response.status_code != 200:
            raise RuntimeError(
                f"{partner} {method} {path}: HTTP {response.status_code} {response.text[:200]}"
            )
        return response.json()

    def __enter__(self) -> PointsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
