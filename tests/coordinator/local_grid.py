"""A Flower grid that delivers every message, in order, to a real node in this process.

Each node is the real ``participant_node.training.job_handler.handle`` over a real partner folder
(its own accountant file, its own consent store); only the network is replaced, so a test can
decide the fate of each reply: delivered, lost after the node served it, or late (the node serves
it only after the round closed, before its next message, as a SuperNode serves its queue in order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from uuid import uuid4

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from participant_node.training.job_handler import NodeContext, handle

__all__ = ["Fate", "LocalGrid"]


class Fate(StrEnum):
    DELIVERED = "delivered"
    LOST = "lost"  # the node served the message; its reply never arrived
    LATE = "late"  # the node serves the message after the round closed


# (node id, request) -> what becomes of the request and its reply
FatePolicy = Callable[[int, Message], Fate]


class LocalGrid(Grid):
    def __init__(self, nodes: dict[int, NodeContext], fate: FatePolicy | None = None) -> None:
        self.nodes = nodes
        self.fate = fate or (lambda node, message: Fate.DELIVERED)
        self.backlog: dict[int, list[Message]] = {node: [] for node in nodes}
        self.lost_or_late: list[tuple[int, str]] = []
        self.replies: dict[str, Message] = {}  # pushed message id -> its reply, until pulled
        self._run = Run.create_empty(run_id=1)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, *args: object, **kwargs: object) -> Message:
        raise NotImplementedError("build messages with flwr.app.Message")

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message now (as its fate says); its reply waits for ``pull_messages``."""
        ids = []
        for message in messages:
            # Flower's in-memory grid gives a pushed message its id the same way.
            message.metadata.__dict__["_message_id"] = str(uuid4())
            ids.append(message.metadata.message_id)
            for reply in self.send_and_receive([message]):
                self.replies[message.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            for late in self.backlog[node]:  # the node's queue: what came late is served first
                handle(late, self.nodes[node])
            self.backlog[node].clear()
            fate = self.fate(node, message)
            if fate is Fate.LATE:
                self.backlog[node].append(message)
            else:
                reply = handle(message, self.nodes[node])
                if fate is Fate.DELIVERED:
                    replies.append(reply)
            if fate is not Fate.DELIVERED:
                self.lost_or_late.append((node, message.metadata.message_type))
        return replies
