"""A grid that never lets a job wait forever for nodes, and never lets old requests outlive their round.

Flower's strategies wait in ``sample_nodes`` until ``min_available_nodes`` SuperNodes are online,
with no deadline: a node that crashed or lost its network is marked offline by the SuperLink after
about two missed heartbeats (60 s in Flower 1.41), and the next round then waits indefinitely.
Wrapped in ``NodeDeadlineGrid``, the wait ends: once fewer than ``minimum`` nodes have been online
for ``timeout_s`` in a row, ``get_node_ids`` raises ``JobFailedError`` naming how many are online,
so the job fails with that reason instead of hanging. While enough nodes are online a round goes on
with those (a node that comes back is sampled again in the next round).

Every request it sends lives only as long as its round waits for replies (Flower's message TTL):
a node that returns after its round closed does not find the old request in its queue, so it never
trains (and spends privacy budget) on a model the server no longer waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from coordinator.job_errors import JobFailedError

__all__ = ["NodeDeadlineGrid"]


class NodeDeadlineGrid(Grid):
    """Delegates to ``grid``; see the module docstring for the deadline and the TTL it adds.

    Parameters
    ----------
    grid
        The run's grid.
    minimum
        The fewest online nodes the job can go on with (the job's ``min_nodes``).
    timeout_s
        How long too few nodes may be online before the job fails (the job's round timeout).
    clock
        Seconds on a monotonic clock (a parameter for tests).
    """

    def __init__(
        self,
        grid: Grid,
        *,
        minimum: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if minimum < 1:
            raise ValueError(f"minimum must be at least 1, got {minimum}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.grid, self.minimum, self.timeout_s, self._clock = grid, minimum, timeout_s, clock
        self._short_since: float | None = None

    def get_node_ids(self) -> Iterable[int]:
        node_ids = list(self.grid.get_node_ids())
        if len(node_ids) >= self.minimum:
            self._short_since = None
            return node_ids
        now = self._clock()
        if self._short_since is None:
            self._short_since = now
        elif now - self._short_since >= self.timeout_s:
            raise JobFailedError(
                f"only {len(node_ids)} node(s) online for {self.timeout_s:.0f} s; "
                f"the job needs {self.minimum}"
            )
        return node_ids

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.grid.send_and_receive(self._expiring(messages, timeout), timeout=timeout)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def _expiring(self, messages: Iterable[Message], timeout: float | None) -> list[Message]:
        out = list(messages)
        if timeout is not None:
            for message in out:
                # The request expires when its round stops waiting for the reply.
                message.metadata.ttl = min(message.metadata.ttl, max(timeout, 1.0))
        return out

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, *args: object, **kwargs: object) -> Message:
        return self.grid.create_message(*args, **kwargs)  # type: ignore[arg-type]
