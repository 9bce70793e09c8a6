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

It also starts the node's ClientApp zygote beside the SuperNode (``participant_node.clientapp_zygote``:
Flower's ClientApp runtime imported once and forked per message, instead of imported by every
message's process) and names its socket to the SuperNode's ClientApp launcher; the zygote ends
with this program.

Usage: ``python -m participant_node.prompt_supernode [--pull-interval-s S] FLOWER_SUPERNODE_ARGS``.
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

__all__ = ["DEFAULT_PULL_INTERVAL_S", "CappedSleep", "main"]

DEFAULT_PULL_INTERVAL_S = 1.0
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


def main(argv: list[str] | None = None) -> None:
    """Run ``flower-supernode`` with the remaining arguments and the capped idle wait."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--pull-interval-s", type=float, default=DEFAULT_PULL_INTERVAL_S)
    known, flower_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
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
