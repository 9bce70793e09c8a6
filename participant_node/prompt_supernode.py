"""The node's SuperNode program: Flower's ``flower-supernode``, asking for messages every second.

Flower 1.41's SuperNode loop (``flwr.supernode.start_client_internal``) pulls the SuperLink for a
message and, when none is waiting, sleeps 3 s before it asks again. A node asks right after it
replied, before the server has collected every node's reply and sent the next message, so almost
every message of a job (describe, moments, each training round, layout, evaluation, settlement)
found every node in that 3 s sleep: a job of a dozen messages idled ~25 s. This program runs
Flower's SuperNode unchanged except that the idle wait between pulls is capped at
``--pull-interval-s`` (default 1 s; its other, shorter waits are kept). A pull is one small
authenticated request on a connection the SuperNode holds, so the cap costs the SuperNode and the
SuperLink a few CPU milliseconds per second per node (see ``coordinator.prompt_grid`` for the
server's side of the same wait).

Its heartbeat to the SuperLink is sent for a 10 s interval instead of Flower's fixed 30 s
(``--heartbeat-interval-s``; 10 s is the shortest the SuperLink accepts, ``HEARTBEAT_MIN_INTERVAL``).
The SuperLink declares a node offline once it missed ``HEARTBEAT_PATIENCE`` (2) intervals and only
then answers the node's outstanding messages with an error, so a round that waits on a node whose
host died closes within ~20 s instead of ~60 s. It costs one small request every ~4 s per node,
beside the pulls every second.

It also starts the node's ClientApp zygote beside the SuperNode (``participant_node.clientapp_zygote``:
Flower's ClientApp runtime imported once and forked per message, instead of imported by every
message's process) and names its socket to the SuperNode's ClientApp launcher; the zygote ends
with this program.

Usage: ``python -m participant_node.prompt_supernode [--pull-interval-s S] [--heartbeat-interval-s S]
FLOWER_SUPERNODE_ARGS``.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from types import ModuleType

from participant_node.clientapp_zygote import SOCKET_ENV

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_PULL_INTERVAL_S",
    "CappedSleep",
    "main",
    "set_heartbeat_interval",
]

DEFAULT_PULL_INTERVAL_S = 1.0
DEFAULT_HEARTBEAT_INTERVAL_S = 10.0
_LOG = logging.getLogger(__name__)


class CappedSleep:
    """The ``time`` module as one Flower module sees it, with every sleep capped at ``cap_s``."""

    def __init__(self, cap_s: float, clock: ModuleType = time) -> None:
        if cap_s <= 0:
            raise ValueError(f"the pull interval must be > 0 s, got {cap_s}")
        self.cap_s, self._time = cap_s, clock

    def sleep(self, seconds: float) -> None:
        self._time.sleep(min(seconds, self.cap_s))

    def __getattr__(self, name: str) -> object:
        return getattr(self._time, name)


def set_heartbeat_interval(seconds: float) -> None:
    """Make this process's SuperNode announce and keep a heartbeat of ``seconds``.

    Flower 1.41 reads the interval from a module constant in two places: the interval the SuperNode
    announces to the SuperLink (``ActivateNode``, ``SendNodeHeartbeat``) and the sender's wait
    between heartbeats (``(interval - call timeout) x ~0.8``). Both are set, or neither.
    """
    from flwr.common.constant import HEARTBEAT_MAX_INTERVAL, HEARTBEAT_MIN_INTERVAL
    from flwr.supercore import heartbeat
    from flwr.supernode import fleet_http_connection

    if not HEARTBEAT_MIN_INTERVAL <= seconds <= HEARTBEAT_MAX_INTERVAL:
        raise ValueError(
            f"the heartbeat interval must be in [{HEARTBEAT_MIN_INTERVAL}, {HEARTBEAT_MAX_INTERVAL}] s"
            f" (the SuperLink refuses others), got {seconds}"
        )
    modules: list[ModuleType] = [heartbeat, fleet_http_connection]
    if not all(isinstance(getattr(m, "HEARTBEAT_DEFAULT_INTERVAL", None), int | float) for m in modules):
        _LOG.warning("this Flower's SuperNode has no heartbeat interval to set; keeping its own")
        return
    for module in modules:
        module.HEARTBEAT_DEFAULT_INTERVAL = seconds  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Run ``flower-supernode`` with the remaining arguments, the capped idle wait and the heartbeat."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--pull-interval-s", type=float, default=DEFAULT_PULL_INTERVAL_S)
    parser.add_argument("--heartbeat-interval-s", type=float, default=DEFAULT_HEARTBEAT_INTERVAL_S)
    known, flower_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    set_heartbeat_interval(known.heartbeat_interval_s)
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli.flower_supernode import flower_supernode

    if isinstance(getattr(start_client_internal, "time", None), ModuleType):
        start_client_internal.time = CappedSleep(known.pull_interval_s)  # type: ignore[assignment]
    else:  # a Flower without this loop: run it unchanged (only the latency is at stake)
        _LOG.warning("this Flower's SuperNode has no idle wait to cap; running it unchanged")
    _start_zygote()
    sys.argv = ["flower-supernode", *flower_args]
    flower_supernode()


def _start_zygote() -> None:
    """Start the ClientApp zygote; its socket (in a private 0700 folder) goes into the environment."""
    # A private folder of its own: a Unix socket path is limited to 108 bytes, too short for some
    # state folders, and only this node's user may ask the zygote to run a ClientApp.
    folder = tempfile.mkdtemp(prefix="loyalfed-clientapp-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    socket_path = os.path.join(folder, "zygote.sock")
    subprocess.Popen(
        [sys.executable, "-m", "participant_node.clientapp_zygote", socket_path, str(os.getpid())],
        stdin=subprocess.DEVNULL,
    )
    os.environ[SOCKET_ENV] = socket_path


if __name__ == "__main__":
    main()
