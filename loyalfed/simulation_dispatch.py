"""Hand the simulation's virtual SuperNodes their messages without a scan per node per poll.

Flower 1.41's simulation engine (``flwr.server.superlink.fleet.vce.vce_api.add_messages_to_queue``)
asks the in-memory LinkState for every node's next message every 0.1 s, and each ask walks every
stored message (``InMemoryLinkState.get_message_ins`` checks each one's expiry and federation), so
one poll costs nodes x stored messages checks, whether or not anything was sent: at 1,000 nodes
about 10^6 checks per poll, a whole core of the driver for as long as a round runs (sampled while
the scale benchmark ran: 2.5 % of a core at 30 nodes, growing as the square of the nodes).

``dispatch_messages`` is a drop-in for that loop: it records the destination of every message the
ServerApp stores (through the same LinkState instance) and asks, through the same public
``get_message_ins``, only for the nodes that were sent something. Each message is still checked,
marked delivered and queued by Flower's own code; a full pass over every node at start-up and
every ``SWEEP_S`` seconds picks up anything stored some other way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from queue import Queue
from typing import Any

__all__ = ["SWEEP_S", "dispatch_messages", "dispatching_by_destination"]

SWEEP_S = 30.0
_POLL_S = 0.1  # Flower's own poll interval


class _Destinations:
    """The node ids sent a message since the last take; wraps ``state.store_message_ins``."""

    def __init__(self, state: Any) -> None:
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        store: Callable[[Any], Any] = state.store_message_ins

        def recording_store(message: Any) -> Any:
            stored = store(message)
            with self._lock:
                self._pending.add(int(message.metadata.dst_node_id))
            return stored

        state.store_message_ins = recording_store

    def take(self) -> set[int]:
        with self._lock:
            pending, self._pending = self._pending, set()
        return pending


def dispatch_messages(
    state: Any, queue: Queue[Any], nodes_mapping: dict[int, int], f_stop: threading.Event
) -> None:
    """Put each stored message for a simulated node in ``queue`` (``add_messages_to_queue``'s contract)."""
    destinations = _Destinations(state)
    swept = time.monotonic()
    due: set[int] = set(nodes_mapping)  # first pass: every node
    while not f_stop.is_set():
        if time.monotonic() - swept > SWEEP_S:
            due, swept = set(nodes_mapping), time.monotonic()
        due |= destinations.take()
        for node_id in [n for n in due if n in nodes_mapping]:
            messages = state.get_message_ins(node_id=node_id, limit=1)
            for message in messages:
                queue.put(message)
            if not messages:
                due.discard(node_id)
        f_stop.wait(_POLL_S)


@contextlib.contextmanager
def dispatching_by_destination() -> Iterator[None]:
    """Within the block, the simulation engine dispatches with ``dispatch_messages``."""
    from flwr.server.superlink.fleet.vce import vce_api

    original = vce_api.add_messages_to_queue
    vce_api.add_messages_to_queue = dispatch_messages
    try:
        yield
    finally:
        vce_api.add_messages_to_queue = original
