"""A real Flower SuperLink on loopback over TLS, and real SuperNodes run by the node's own supervisor.

Shared by the deployment tests that need a SuperLink but not the whole platform: a TLS SuperLink
(the CA from ``tests/deploy/one_machine_certificates.py``) with its ``FLWR_HOME`` in a tmp folder, SuperNodes
started by ``participant_node.supernode_supervisor`` (the approving ClientApp launcher, SuperNode
authentication keys) and ``flwr run`` of an app folder. Every process is stopped by ``close``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from participant_node.supernode_supervisor import SuperNodeLaunch, SuperNodeSupervisor
from pki import create_supernode_key

CERTIFICATE_SCRIPT = Path(__file__).with_name("one_machine_certificates.py")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


class LoopbackSuperLink:
    """One SuperLink and the SuperNodes attached to it; ``close`` stops them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.certs = root / "certs"
        subprocess.run(
            [sys.executable, str(CERTIFICATE_SCRIPT), "--out", str(self.certs)],
            check=True,
            capture_output=True,
        )
        home = root / "flwr-home"
        home.mkdir()
        # Flower 1.41 serves the Control, Fleet and ServerAppIo APIs on one HTTPS port (--host/--port).
        self.port = free_port()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{self.port}"\n'
            f'root-certificates = "{self.certs / "ca.crt"}"\n',
            encoding="utf-8",
        )
        self.env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        self.supernodes: list[SuperNodeSupervisor] = []
        log = (root / "superlink.log").open("wb")
        self._superlink = subprocess.Popen(
            [
                str(BIN / "flower-superlink"),
                *("--ssl-ca-certfile", str(self.certs / "ca.crt")),
                *("--ssl-certfile", str(self.certs / "server.pem")),
                *("--ssl-keyfile", str(self.certs / "server.key")),
                *("--host", "127.0.0.1", "--port", str(self.port)),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        _wait_for_port(self.port, timeout=60)

    def add_supernode(
        self, name: str, *, node_config: Mapping[str, str], approved_apps: frozenset[str]
    ) -> SuperNodeSupervisor:
        """Start a SuperNode as ``loyalfed node serve`` does (its own key, the approving launcher)."""
        keys = create_supernode_key(self.root / name / "keys")
        # Only registered SuperNode keys may connect (--enable-supernode-auth), as on the platform.
        self._flwr("supernode", "register", str(keys.public_key), "local")
        launch = SuperNodeLaunch(
            superlink_address=f"127.0.0.1:{self.port}",
            root_certificate=self.certs / "ca.crt",
            auth_private_key=keys.private_key,
            node_config=node_config,
            runtime_port=free_port(),
            log_file=self.root / name / "logs" / "supernode.log",
            approved_apps=approved_apps,
        )
        supervisor = SuperNodeSupervisor(launch, env=self.env)
        supervisor.start()
        self.supernodes.append(supervisor)
        return supervisor

    def _flwr(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "flwr"), *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"flwr {args[0]} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        return done.stdout

    def run(self, app_dir: Path, run_config: str) -> str:
        """``flwr run`` the app folder; returns flwr's output."""
        return self._flwr("run", str(app_dir), "local", "--run-config", run_config)

    def logs(self) -> str:
        files = [self.root / "superlink.log", *sorted(self.root.glob("*/logs/supernode.log"))]
        return "\n".join(f"== {f}\n{f.read_text(errors='replace')[-4000:]}" for f in files if f.exists())

    def close(self) -> None:
        for supervisor in self.supernodes:
            # SIGKILLed already if it outlives the grace: a saturated machine may reap it after 10 s.
            with contextlib.suppress(subprocess.TimeoutExpired):
                supervisor.stop()
        if self._superlink.poll() is None:
            os.killpg(self._superlink.pid, signal.SIGTERM)
            try:
                self._superlink.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._superlink.pid, signal.SIGKILL)
                self._superlink.wait(timeout=10)
