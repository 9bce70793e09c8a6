"""The platform on separate hosts: the loopback federation with each party in a namespace of its own.

The coordinator (its API and supervised SuperLink) runs on one host and each partner's node (its
agent and SuperNode) on another, every one reached at its own private address across a bridge
(``tests.platform.network_namespaces``). The test process is the operators' workstation on that
bridge: it makes the CA and keys where the loopback federation makes them, and calls the
coordinator's API over HTTPS at the coordinator host's address.

Faults act on hosts: ``crash`` kills everything on a host, ``cut``/``restore`` pull and replug its
cable, ``restart`` starts its service again from the same state folder (keys, databases).

``start`` measures how long this machine, as loaded as it is now, took to bring the hosts up;
``round_timeout_s`` derives from it how long a round may wait for a live node (a round starts the
same kind of processes: a ClientApp per message, the node's gate, torch), so a busy CI machine
stretches the timeout instead of failing nodes that are only slow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loyalfed.demo.loopback_federation import FederationError, LoopbackFederation, PartnerSeat
from tests.platform.network_namespaces import NamespaceNetwork

__all__ = ["NamespaceFederation"]

COORDINATOR = "coordinator"


class NamespaceFederation(LoopbackFederation):
    """A coordinator host and one host per partner, each its own network namespace."""

    def __init__(self, root: Path, partners: Sequence[PartnerSeat], network: NamespaceNetwork) -> None:
        self.network = network
        self.commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        self.started_in_s = 0.0
        super().__init__(root, partners)

    def start(self, *, timeout_s: float = 120.0) -> None:
        began = time.monotonic()
        super().start(timeout_s=timeout_s)
        self.started_in_s = time.monotonic() - began

    def round_timeout_s(self, *, floor_s: float = 60.0) -> float:
        """How long a round waits for a live node: three start-ups of the federation, at least ``floor_s``.

        Starting the federation (a coordinator, three nodes with their SuperNodes) measures the load
        the rounds will run under; a round of a small model is far cheaper on a quiet machine.
        """
        return max(floor_s, 3.0 * self.started_in_s)

    def host_of(self, party: str) -> str:
        return self.network.hosts[party].address

    def placed(self, party: str, command: list[str]) -> list[str]:
        return self.network.hosts[party].command(command)

    def _spawn(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        self.commands[name] = (command, extra_env)
        super()._spawn(name, command, extra_env)

    # faults ---------------------------------------------------------------------------------
    def crash(self, party: str) -> None:
        """The host dies with everything on it (service, SuperLink or SuperNode, app processes)."""
        self.network.crash(party)
        process = self.processes[_process_name(party)]
        process.wait(timeout=30)

    def restart(self, party: str, *, timeout_s: float = 90.0) -> None:
        """Start the host's service again from its state folder, and wait until it is back."""
        name = _process_name(party)
        command, extra_env = self.commands[name]
        self._spawn(name, command, extra_env)
        if party == COORDINATOR:
            self._wait_health(timeout_s)
        else:
            self.wait_online([party], timeout_s=timeout_s)

    def stop(self) -> None:
        """Every host's processes killed (nodes first, after a polite SIGTERM), then the network goes."""
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for party in self.network.hosts:
            self.network.crash(party)
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.wait(timeout=10)

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.api("analyst", "GET", f"/jobs/{job_id}")
        return job

    def wait_until(self, what: str, predicate: Any, *, timeout_s: float, every_s: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every_s)
        raise FederationError(f"{what}: not seen within {timeout_s:.0f} s")


def _process_name(party: str) -> str:
    return party if party == COORDINATOR else f"node-{party}"
