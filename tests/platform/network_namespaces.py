"""Separate hosts on one machine: one Linux network namespace per organisation, joined by a bridge.

Each host gets its own namespace (its own interfaces, addresses, ports and routing), a veth pair
whose inner end (``eth0``) carries a private address of a /24 picked for this run, and ``lo`` up
(services bind loopback-only ports inside their host). The outer ends hang on a bridge in the
machine's own namespace, which also holds the subnet's ``.1`` address: the test acts from there,
as an operator's workstation would. Traffic goes only to those addresses, never further
(no default route, no forwarding).

Everything is named after the creating process, so parallel test workers do not collide, and
``remove`` deletes what ``create`` made (killing every process still in a namespace first).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Host", "NamespaceNetwork", "NamespacesUnavailable", "unavailable_reason"]


class NamespacesUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``, or the kernel refuses)."""


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["netns", "exec", namespace, "ip"] if namespace else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise NamespacesUnavailable(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    return result


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used on this machine, or None when they can (a probe is made and removed)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"lfprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (NamespacesUnavailable, FileNotFoundError) as err:
        return f"network namespaces are not permitted here: {err}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    """One organisation's host: its namespace, its address, and its link's two ends."""

    name: str
    namespace: str
    address: str
    outer_link: str  # the veth end on the bridge, in the machine's namespace
    inner_link: str = "eth0"

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host (``ip netns exec``, which execs: the pid is the program's)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class NamespaceNetwork:
    """A bridge, and one namespace with an address per host name; ``remove`` undoes all of it."""

    def __init__(self, names: Sequence[str]) -> None:
        self.tag = f"lf{os.getpid() % 100000}"
        self.bridge = f"{self.tag}br"
        self.subnet = self._free_subnet()
        addresses = list(self.subnet.hosts())
        self.gateway = str(addresses[0])
        self.hosts = {
            name: Host(
                name=name,
                namespace=f"{self.tag}-{index}",
                address=str(addresses[index + 1]),
                outer_link=f"{self.tag}v{index}",
            )
            for index, name in enumerate(names)
        }
        self._made: list[tuple[str, ...]] = []

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        """A /24 in 10.200.0.0/13 that no interface of this machine uses yet."""
        used = _ip("-o", "-4", "addr", "show").stdout
        rng = random.Random(os.getpid())
        for _ in range(64):
            subnet = ipaddress.IPv4Network(f"10.{rng.randint(200, 207)}.{rng.randint(0, 255)}.0/24")
            prefix = str(subnet.network_address).rsplit(".", 1)[0]
            if f"inet {prefix}." not in used:
                return subnet
        raise NamespacesUnavailable("no free private /24 for the test network")

    def create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", self.bridge))
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts.values():
            _ip("netns", "add", host.namespace)
            self._made.append(("netns", host.namespace))
            _ip("link", "add", host.outer_link, "type", "veth", "peer", "name", host.inner_link,
                "netns", host.namespace)  # fmt: skip
            self._made.append(("link", host.outer_link))
            _ip("link", "set", host.outer_link, "master", self.bridge, "up")
            _ip("addr", "add", f"{host.address}/24", "dev", host.inner_link, namespace=host.namespace)
            _ip("link", "set", host.inner_link, "up", namespace=host.namespace)
            _ip("link", "set", "lo", "up", namespace=host.namespace)

    def __enter__(self) -> NamespaceNetwork:
        try:
            self.create()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # faults ---------------------------------------------------------------------------------
    def cut(self, name: str) -> None:
        """Pull the host's cable: its interface goes down (``ip link set eth0 down``)."""
        host = self.hosts[name]
        _ip("link", "set", host.inner_link, "down", namespace=host.namespace)

    def restore(self, name: str) -> None:
        host = self.hosts[name]
        _ip("link", "set", host.inner_link, "up", namespace=host.namespace)

    def pids(self, name: str) -> list[int]:
        result = subprocess.run(
            ["ip", "netns", "pids", self.hosts[name].namespace],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return [int(pid) for pid in result.stdout.split()]

    def crash(self, name: str) -> None:
        """The host dies: SIGKILL every process in its namespace, and wait until none is left."""
        deadline = time.monotonic() + 20
        while pids := self.pids(name):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise NamespacesUnavailable(f"processes survive in {name}'s namespace: {pids}")
            time.sleep(0.1)

    def remove(self) -> None:
        for kind, name in reversed(self._made):
            if kind == "netns":
                host = next(h for h in self.hosts.values() if h.namespace == name)
                with contextlib.suppress(NamespacesUnavailable):
                    self.crash(host.name)
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self._made.clear()
