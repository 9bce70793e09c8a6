"""Hand the simulation's virtual SuperNodes their messages without a scan per node per poll.

Flower 1.41's simulation engine (``flwr.server.superlink.fleet.vce.vce_api.add_messages_to_queue``)
asks the in-memory LinkState for every node's next message every 0.1 s, and each ask walks every
stored message (``InMemoryLinkState.get_message_ins`` checks each one's expiry and federation), so
one poll costs nodes x stored messages checks, whether or not anything was sent: at 1,000 nodes
about 10^6 checks per poll, a whole core of the driver for as long as a round runs (sampled while
the scale benchmark ran: 2.5 % of a core at 30 nodes, growing as the square of the nodes).

``dispatch_messages`` is a drop-in for that loop: it records the id and destination of every
message the ServerApp stores (through the same LinkState instance; a first look at the store picks
up anything stored before), and hands each node its next recorded message as
``get_message_ins(node_id, limit=1)`` would, but over that node's own messages only: Flower's own
check (``_check_stored_messages``: expiry, federation; invalid messages deleted), then marked
delivered and queued. Flower's ask walks every stored message, and ours also asked each node twice
(once to find its message, once to find nothing more): 2 x nodes asks of nodes checks each per
round, 2 x 10^6 checks under the LinkState's lock at 1,000 nodes (py-spy over a 1,000-node job's
first exchanges: after the start-up file scan the dispatch thread was the driver's busiest, two
thirds of it in ``get_message_ins``). Now one check per message. These are Flower 1.41's
in-memory LinkState internals (``lock``, ``message_ins_store``, ``_check_stored_messages``);
pyproject pins flwr below 1.42.

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

from flwr.supercore.date import now

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
    """Ids of the messages stored for each node since the last take; wraps ``state.store_message_ins``."""

    def __init__(self, state: Any) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, dict[str, None]] = {}  # node id -> message ids, in stored order
        store: Callable[[Any], Any] = state.store_message_ins

        def recording_store(message: Any) -> Any:
            stored = store(message)
            if stored is not None:
                self._add(int(message.metadata.dst_node_id), str(stored))
            return stored

        state.store_message_ins = recording_store
        with state.lock:  # anything stored before the recording began
            for message_id, message in list(state.message_ins_store.items()):
                self._add(int(message.metadata.dst_node_id), message_id)

    def _add(self, node_id: int, message_id: str) -> None:
        with self._lock:
            self._pending.setdefault(node_id, {})[message_id] = None

    def take(self) -> dict[int, dict[str, None]]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending


def _next_message(state: Any, message_ids: dict[str, None]) -> Any | None:
    """``state.get_message_ins(node_id, limit=1)`` over ``message_ids`` (one node's) only; each id
    looked at is dropped from ``message_ids``."""
    with state.lock:
        while message_ids:
            message_id = next(iter(message_ids))
            del message_ids[message_id]
            state._check_stored_messages({message_id})  # deletes it if expired or out of federation
            message = state.message_ins_store.get(message_id)
            if message is not None and message.metadata.delivered_at == "":
                message.metadata.delivered_at = now().isoformat()
                return message
    return None


def dispatch_messages(
    state: Any, queue: Queue[Any], nodes_mapping: dict[int, int], f_stop: threading.Event
) -> None:
    """Put each stored message for a simulated node in ``queue`` (``add_messages_to_queue``'s contract:
    at most one message per node per poll)."""
    destinations = _Destinations(state)
    due: dict[int, dict[str, None]] = {}
    while not f_stop.is_set():
        for node_id, message_ids in destinations.take().items():
            if node_id in nodes_mapping:
                due.setdefault(node_id, {}).update(message_ids)
        for node_id in list(due):
            message = _next_message(state, due[node_id])
            if message is not None:
                queue.put(message)
            if not due[node_id]:
                del due[node_id]
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
