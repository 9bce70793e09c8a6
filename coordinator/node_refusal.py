"""A node's refusal of a job stops the job, with the node's own reason (the coordinator shows it)."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Message

from coordinator.job_errors import JobRefusedError
from protocol import Refusal, refusal_of

__all__ = ["RefusalCallback", "refuse_if_refused"]

RefusalCallback = Callable[[Refusal], None]


def refuse_if_refused(message: Message, on_refusal: RefusalCallback | None = None) -> None:
    """Raise ``JobRefusedError`` ("refused by node P: reason") if ``message`` is a node's refusal.

    A malformed refusal raises ``MalformedReplyError`` (the node then counts as failed).
    """
    if message.has_error():
        return
    refusal = refusal_of(message.content)
    if refusal is None:
        return
    if on_refusal is not None:
        on_refusal(refusal)
    raise JobRefusedError(str(refusal))
