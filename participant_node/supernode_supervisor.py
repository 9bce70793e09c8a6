"""Start and supervise the node's Flower SuperNode (flwr 1.41) as a child process.

The SuperNode connects to the coordinator's SuperLink over TLS (``--root-certificates``: the
SuperLink's CA) and authenticates with the partner's own key (``--auth-supernode-private-key``;
the SuperLink admits only keys the coordinator registered). Its node config tells the thin
ClientApp where the warm node service listens and where the node-local secret is.

A SuperNode that exits is restarted with exponential backoff (1 s doubling to 30 s); ``stop``
terminates its whole process group (SuperNode and its ClientApp processes), SIGKILL after 10 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from participant_node.approved_apps import launcher_environment, write_launcher
from participant_node.prompt_supernode import DEFAULT_PULL_INTERVAL_S

__all__ = ["SuperNodeLaunch", "SuperNodeSupervisor", "node_config_arg"]

_LOG = logging.getLogger(__name__)
_BACKOFF_START_S, _BACKOFF_MAX_S = 1.0, 30.0
_STOP_GRACE_S = 10.0
# Flower's SuperExec reads its task poll interval (seconds) from this variable (flwr 1.41).
SUPEREXEC_POLL_ENV, SUPEREXEC_POLL_S = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.5"
TELEMETRY_ENV = "FLWR_TELEMETRY_ENABLED"  # Flower's usage telemetry, on unless "0"


def node_config_arg(config: Mapping[str, str]) -> str:
    """Flower's ``--node-config`` syntax: space-separated ``key="value"`` pairs (TOML strings)."""
    for key, value in config.items():
        if '"' in value or "\\" in value or "\n" in value:
            raise ValueError(f"node config {key}: a value may not contain quotes, backslashes or newlines")
    return " ".join(f'{key}="{value}"' for key, value in config.items())


@dataclass(frozen=True)
class SuperNodeLaunch:
    """How to start the SuperNode."""

    superlink_address: str
    root_certificate: Path
    auth_private_key: Path
    node_config: Mapping[str, str]
    runtime_port: int
    log_file: Path
    approved_apps: frozenset[str] = frozenset()  # sha256 of each approved FAB; none: every app refused
    executable: Path = field(default_factory=lambda: Path(sys.executable).parent / "flower-supernode")
    # Flower's SuperNode idles 3 s between pulls for messages; the node's program asks every
    # ``pull_interval_s`` instead (``participant_node.prompt_supernode``). None: Flower's program as is.
    pull_interval_s: float | None = DEFAULT_PULL_INTERVAL_S

    @property
    def launcher_dir(self) -> Path:
        """Where the approving ``flwr-clientapp`` launcher is written (beside the SuperNode's log)."""
        return self.log_file.parent / "clientapp-launcher"

    def program(self) -> list[str]:
        """Flower's ``flower-supernode``, or the same SuperNode with the prompter pull."""
        if self.pull_interval_s is None:
            return [str(self.executable)]
        python = self.executable.parent / "python"
        prompt = ["-m", "participant_node.prompt_supernode", "--pull-interval-s", str(self.pull_interval_s)]
        return [str(python if python.exists() else sys.executable), *prompt]

    def command(self) -> list[str]:
        return [
            *self.program(),
            "--superlink",
            self.superlink_address,
            "--root-certificates",
            str(self.root_certificate),
            "--auth-supernode-private-key",
            str(self.auth_private_key),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.runtime_port),
            "--node-config",
            node_config_arg(self.node_config),
        ]


class SuperNodeSupervisor:
    """Keep one SuperNode running until ``stop``; counts restarts and remembers the last exit code."""

    def __init__(self, launch: SuperNodeLaunch, *, env: Mapping[str, str] | None = None) -> None:
        self.launch = launch
        self._env = dict(env if env is not None else os.environ)
        # The SuperNode starts Flower's ClientApp and SuperExec programs by name: find them beside it.
        self._env["PATH"] = os.pathsep.join([str(launch.executable.parent), self._env.get("PATH", "")])
        # ... except the ClientApp program, which is the node's approving launcher (found first).
        write_launcher(launch.launcher_dir)
        self._env = launcher_environment(
            self._env, launcher_dir=launch.launcher_dir, approved=launch.approved_apps
        )
        # Its SuperExec looks for a new ClientApp task every second by default; every message of a
        # job waits for that look, so it looks every 0.5 s (not faster: each look costs the SuperExec
        # and the SuperNode CPU; at 0.1 s a SuperExec alone spent 7 s of CPU in a 460 s job).
        self._env.setdefault(SUPEREXEC_POLL_ENV, SUPEREXEC_POLL_S)
        # Flower's telemetry posts an event to telemetry.flower.ai from every SuperNode, SuperExec
        # and per-message ClientApp process, and each exit waits up to 4 s for it: a partner's node
        # sends nothing to third parties unless its operator sets FLWR_TELEMETRY_ENABLED=1.
        self._env.setdefault(TELEMETRY_ENV, "0")
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.restarts = 0
        self.last_exit_code: int | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the SuperNode supervisor is already started")
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="supernode-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        self.launch.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.launch.log_file.open("ab") as log, self._lock:
            # A session of its own: stop() signals the SuperNode and its ClientApp processes together.
            self._process = subprocess.Popen(
                self.launch.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )
        _LOG.info("SuperNode started (pid %s)", self._process.pid)

    def _watch(self) -> None:
        backoff = _BACKOFF_START_S
        while not self._stopping.is_set():
            with self._lock:
                process = self._process
            assert process is not None
            code = process.wait()
            self.last_exit_code = code
            if self._stopping.is_set():
                return
            _LOG.warning("SuperNode exited with code %s; restarting in %.0f s", code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, _BACKOFF_MAX_S)
            self.restarts += 1
            self._spawn()

    def stop(self) -> None:
        """Terminate the SuperNode's process group and stop restarting it."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=_STOP_GRACE_S)
        if self._thread is not None:
            self._thread.join(timeout=_STOP_GRACE_S)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signum)
