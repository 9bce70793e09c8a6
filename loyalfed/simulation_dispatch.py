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
marked delivered and queued by Flower's own code; one pass over every node at start-up picks up
anything stored before the recording began. (No periodic full pass: at 1,000 nodes one pass is
itself 10^6 checks, longer than any period worth having on a loaded machine.)

The ServerApp's side has the same shape: ``InMemoryGrid.send_and_receive`` pulls every 0.1 s, and
each pull makes the LinkState verify every outstanding request (``get_message_res``): work
proportional to the nodes ten times a second while a round runs (a fifth of the driver's CPU at
1,000 nodes, sampled with py-spy). ``paced_send_and_receive`` is Flower's loop
(``coordinator.prompt_grid.send_and_receive``) pausing between pulls ``PULL_S_PER_MESSAGE`` seconds
per outstanding reply, between 0.1 s and 2 s (``paced_pause``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from queue import Queue
from typing import Any

from coordinator.prompt_grid import send_and_receive

__all__ = [
    "PULL_S_PER_MESSAGE",
    "dispatch_messages",
    "dispatching_by_destination",
    "paced_pause",
    "paced_send_and_receive",
]

_POLL_S = 0.1  # Flower's own poll interval
PULL_S_PER_MESSAGE = 0.002
_PULL_S = (0.1, 2.0)  # Flower's own pull interval, and the longest a reply waits to be seen


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
    due: set[int] = set(nodes_mapping)  # first pass: every node
    while not f_stop.is_set():
        due |= destinations.take()
        for node_id in [n for n in due if n in nodes_mapping]:
            messages = state.get_message_ins(node_id=node_id, limit=1)
            for message in messages:
                queue.put(message)
            if not messages:
                due.discard(node_id)
        f_stop.wait(_POLL_S)


def paced_pause(outstanding: int) -> float:
    """Seconds between pulls: ``PULL_S_PER_MESSAGE`` per outstanding reply, within ``_PULL_S``."""
    return min(max(PULL_S_PER_MESSAGE * outstanding, _PULL_S[0]), _PULL_S[1])


def paced_send_and_receive(grid: Any, messages: Iterable[Any], *, timeout: float | None = None) -> list[Any]:
    """``InMemoryGrid.send_and_receive``, pulling at a pace set by the replies still outstanding."""
    return send_and_receive(grid, messages, timeout=timeout, pause=paced_pause)


@contextlib.contextmanager
def dispatching_by_destination() -> Iterator[None]:
    """Within the block, the simulation engine dispatches with ``dispatch_messages`` and the
    ServerApp's in-memory grid waits with ``paced_send_and_receive``."""
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    original = vce_api.add_messages_to_queue, InMemoryGrid.send_and_receive
    vce_api.add_messages_to_queue = dispatch_messages
    InMemoryGrid.send_and_receive = paced_send_and_receive  # type: ignore[assignment]
    try:
        yield
    finally:
        vce_api.add_messages_to_queue, InMemoryGrid.send_and_receive = original  # type: ignore[method-assign]
