"""A Flower ``Grid`` that collects replies promptly: it polls the SuperLink every 0.5 s, not every 3 s.

Flower's deployment grid (``flwr.superlink.grid.http_grid``) pulls replies once right after pushing
and then every 3 s. A round whose nodes answer in 1.1 s therefore takes 3 s, and a job of a dozen
message rounds (describe, standardise, train rounds, evaluate, settle) loses up to 3 s on each.
``PromptGrid`` wraps the grid the ServerApp is given and keeps Flower's contract of
``send_and_receive`` (push, then pull until every reply arrived or the timeout passed) with a
shorter interval; everything else is delegated unchanged. A pull of the SuperLink is one small
request on a connection it already holds.

``send_and_receive`` is that loop on its own, for any grid, with the pause between pulls given as a
rule of the replies still outstanding (the simulation's in-memory grid paces its pulls by them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo  # type: ignore[attr-defined]
from flwr.serverapp import Grid
from flwr.supercore.run import Run

__all__ = ["DEFAULT_POLL_INTERVAL_S", "PauseRule", "PromptGrid", "send_and_receive"]

DEFAULT_POLL_INTERVAL_S = 0.5

PauseRule = Callable[[int], float]
"""Seconds to wait before the next pull, given how many replies are still outstanding."""


def send_and_receive(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float | None,
    pause: PauseRule,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Message]:
    """Flower's ``Grid.send_and_receive`` contract: push ``messages``, then pull until every one has
    its reply or ``timeout`` seconds passed, waiting ``pause(outstanding)`` between pulls (never
    past the deadline)."""
    waiting = set(grid.push_messages(messages))
    deadline = None if timeout is None else clock() + timeout
    replies: list[Message] = []
    while waiting:
        pulled = list(grid.pull_messages(waiting))
        replies.extend(pulled)
        waiting.difference_update(reply.metadata.reply_to_message_id for reply in pulled)
        if not waiting or (deadline is not None and clock() >= deadline):
            break
        seconds = pause(len(waiting))
        sleep(seconds if deadline is None else max(0.0, min(seconds, deadline - clock())))
    return replies


class PromptGrid(Grid):
    """``grid`` with replies pulled every ``poll_interval_s`` seconds."""

    def __init__(
        self,
        grid: Grid,
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self._grid, self._poll_s, self._clock, self._sleep = grid, poll_interval_s, clock, sleep

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``; pull every ``poll_interval_s`` until every one has its reply or
        ``timeout`` seconds passed."""
        return send_and_receive(
            self._grid,
            messages,
            timeout=timeout,
            pause=lambda _outstanding: self._poll_s,
            clock=self._clock,
            sleep=self._sleep,
        )
