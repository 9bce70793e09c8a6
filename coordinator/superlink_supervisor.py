"""The coordinator's Flower SuperLink as a supervised child process.

Started with TLS (a server certificate under the federation CA), SuperNode authentication
(``--enable-supernode-auth``: only SuperNodes whose public key was registered may connect),
runtime dependency installation disabled, and its state database under the coordinator's state
directory, so registered keys and runs survive a restart. A watchdog thread restarts it when it
dies; ``stop`` ends its whole process group. Flower 1.41 serves the Fleet, Control and runtime
APIs over one HTTPS port (``--host``/``--port``).

Keys are admitted through the SuperLink's Control API from this process (``superlink_control``,
the request ``flwr supernode register`` sends); a Flower configuration in ``FLWR_HOME`` under the
state directory lets an operator's ``flwr`` commands reach the same SuperLink.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from coordinator.errors import SuperLinkError
from coordinator.platform.supernode_keys import SupernodeKeyError, supernode_public_key
from coordinator.superlink_control import control_client, one_call_client, register_node, unregister_node

__all__ = ["CONNECTION_NAME", "SuperLinkCertificates", "SuperLinkError", "SuperLinkSupervisor", "free_port"]

CONNECTION_NAME = "coordinator"
_log = logging.getLogger("loyalfed.coordinator.superlink")
_SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"  # seconds (flwr 1.41's SuperExec)
_TELEMETRY_ENV = "FLWR_TELEMETRY_ENABLED"  # Flower's usage telemetry, on unless "0"


@dataclass(frozen=True)
class SuperLinkCertificates:
    """``ca.crt``, ``server.pem`` and ``server.key`` (the layout ``loyalfed pki`` writes)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def certificate(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"

    def check(self) -> None:
        missing = [p.name for p in (self.ca, self.certificate, self.key) if not p.is_file()]
        if missing:
            raise SuperLinkError(f"{self.folder}: missing {', '.join(missing)} for the SuperLink's TLS")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class SuperLinkSupervisor:
    """Start, watch, restart and stop one SuperLink; admit SuperNode keys to it."""

    def __init__(
        self,
        *,
        state_dir: Path,
        certificates: SuperLinkCertificates,
        host: str = "127.0.0.1",
        port: int = 0,
        binaries: Path | None = None,
        restart_delay_s: float = 1.0,
    ) -> None:
        certificates.check()
        self.certificates = certificates
        self.host = host
        self.port = port or free_port(host)
        self.folder = state_dir / "superlink"
        self.flwr_home = state_dir / "flwr-home"
        self._bin = binaries or Path(sys.executable).parent
        self._restart_delay_s = restart_delay_s
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None
        self._control: Any = None  # Flower's ControlHttpClient, made on first use
        self._control_lock = threading.Lock()
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def root_certificate_pem(self) -> str:
        return self.certificates.ca.read_text(encoding="ascii")

    @property
    def running(self) -> bool:
        """Alive and accepting connections."""
        return self._ready.is_set() and self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def environment(self) -> dict[str, str]:
        """The environment for ``flwr`` commands against this SuperLink (FLWR_HOME under DIR)."""
        path = f"{self._bin}{os.pathsep}{os.environ.get('PATH', '')}"
        quiet = {
            # Its SuperExec would look for a new ServerApp task once a second; a job waits for that look.
            _SUPEREXEC_POLL_ENV: os.environ.get(_SUPEREXEC_POLL_ENV, "0.5"),
            # Flower's telemetry posts to telemetry.flower.ai from the SuperLink, its ServerApps and
            # every ``flwr`` command (each exit waiting up to 4 s): off unless the operator turns it on.
            _TELEMETRY_ENV: os.environ.get(_TELEMETRY_ENV, "0"),
        }
        return {**os.environ, **quiet, "FLWR_HOME": str(self.flwr_home), "PATH": path}

    def _write_flower_config(self) -> None:
        self.flwr_home.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION_NAME}"\n\n[superlink.{CONNECTION_NAME}]\n'
            # Flower's CLI refuses a relative root-certificates path in its configuration file.
            f'address = "{self.address}"\nroot-certificates = "{self.certificates.ca.resolve()}"\n',
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [
            str(self._bin / "flower-superlink"),
            "--ssl-ca-certfile",
            str(self.certificates.ca),
            "--ssl-certfile",
            str(self.certificates.certificate),
            "--ssl-keyfile",
            str(self.certificates.key),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--database",
            str(self.folder / "superlink.db"),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
        ]

    def _spawn(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.folder / "superlink.log").open("ab") as log:
            # A session of its own, so stop() ends the whole tree (its SuperExec and ServerApp processes).
            self._process = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
            )

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex((self.host, self.port)) == 0

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until the SuperLink accepts connections; ``SuperLinkError`` if it does not."""
        if not self._ready.wait(timeout_s):
            tail = (self.folder / "superlink.log").read_text(errors="replace")[-800:]
            raise SuperLinkError(
                f"the SuperLink is not listening on {self.address} after {timeout_s:.0f} s: {tail}"
            )

    def start(self) -> None:
        """Spawn the SuperLink and its watchdog; returns at once (``wait_ready`` to block)."""
        self._write_flower_config()
        with self._lock:
            self._spawn()
        self._watchdog = threading.Thread(target=self._watch, name="superlink-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                if self._stopping.is_set():
                    return
                alive = self._process is not None and self._process.poll() is None
                if alive:
                    if not self._ready.is_set() and self._listening():
                        self._ready.set()
                        _log.info("SuperLink listening on %s (pid %s)", self.address, self.pid)
                    continue
                self._ready.clear()
                code = self._process.returncode if self._process else None
                _log.warning("SuperLink exited (code %s); restarting in %.1f s", code, self._restart_delay_s)
            if self._stopping.wait(self._restart_delay_s):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self._spawn()
                    self.restarts += 1

    def stop(self, *, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._ready.clear()
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None:
                return
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        if self._watchdog is not None:
            self._watchdog.join(timeout=timeout_s)
        with self._control_lock:
            if self._control is not None:
                self._control.close()
                self._control = None

    def control(self) -> Any:
        """This process's kept client of the SuperLink's Control API, for reads (thread-safe)."""
        with self._control_lock:
            if self._control is None:
                self._control = control_client(self.address, self.certificates.ca)
            return self._control

    def one_call_control(self) -> AbstractContextManager[Any]:
        """A Control API client on a new connection, closed after the call (for changes)."""
        return one_call_client(self.address, self.certificates.ca)

    def register_supernode(self, public_key_pem: str) -> None:
        """Admit a SuperNode's public key (idempotent: a key already admitted is accepted).

        The OpenSSH line is also kept under ``supernode-keys/``: the keys this SuperLink admitted,
        which an operator can re-register with ``flwr supernode register`` on a fresh database."""
        self.wait_ready(60.0)
        key, kept = self._key_and_kept_line(public_key_pem)
        kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        kept.write_bytes(line + b"\n")
        with self.one_call_control() as client:
            register_node(client, key)

    def retire_supernode(self, public_key_pem: str) -> int:
        """Unregister the SuperNode admitted with this key and forget its kept line; returns how
        many the SuperLink held (0 if none). A node that replaced its key must not leave the old
        one able to connect: whoever holds a lost disk's private key would join as that partner."""
        self.wait_ready(60.0)
        key, kept = self._key_and_kept_line(public_key_pem)
        with self.one_call_control() as client:
            removed = unregister_node(client, key)
        kept.unlink(missing_ok=True)
        return removed

    def _key_and_kept_line(self, public_key_pem: str) -> tuple[ec.EllipticCurvePublicKey, Path]:
        try:
            key = supernode_public_key(public_key_pem)
        except SupernodeKeyError as err:
            raise SuperLinkError(str(err)) from err
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return key, self.folder / "supernode-keys" / f"{hashlib.sha256(line).hexdigest()[:24]}.pub"
