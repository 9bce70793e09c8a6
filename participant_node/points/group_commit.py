"""Group commit: concurrent transfer requests share one reservation transaction and one peer message.

Each caller submits its own request and waits for its own receipt; a caller that finds fewer than
``in_flight`` batches in progress leads: it takes everything queued so far, runs it as one batch,
hands each waiter its receipts, and repeats until the queue is empty. Under load a batch forms
while the previous one is in flight, with no added delay when idle (the technique of database
group commit and of TigerBeetle's request batching).

A batch runs in two stages: ``prepare`` (the reservation transaction, where the caps are checked)
runs for one batch at a time, in the order the batches were taken; ``finish`` (the message to the
peer, its answer, the decisions) runs for up to ``in_flight`` batches at once. So while one
batch's message is at the peer, the next batch is already reserved: the two nodes work at the same
time instead of taking turns, and no two reservations ever check caps side by side. A leader takes
its batch only once it holds the prepare stage, so whatever queued while it waited joins it.

``submit_later`` is the same for a caller that must not block (an async request handler): its
callback gets the receipts, and if it leads, the batch runs on one of this object's own worker
threads, so a waiting request holds no thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")
Result = TypeVar("Result")


@dataclass
class _Waiter(Generic[Item, Result]):
    items: Sequence[Item]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Result] = field(default_factory=list)
    error: BaseException | None = None
    callback: Callable[[list[Result], BaseException | None], None] | None = None


class GroupCommit(Generic[Item, Prepared, Result]):
    def __init__(
        self,
        prepare: Callable[[list[Item]], Prepared],
        finish: Callable[[Prepared], list[Result]],
        *,
        max_batch: int = 1_000,
        in_flight: int = 1,
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self._prepare, self._finish = prepare, finish
        self._max_batch, self._in_flight = max_batch, in_flight
        self._queue: list[_Waiter[Item, Result]] = []
        self._lock = threading.Lock()  # guards the queue and the leader count
        self._serial = threading.Lock()  # one batch at a time in the prepare stage
        self._leaders = 0
        self._worker: ThreadPoolExecutor | None = None

    def _enqueue(self, waiter: _Waiter[Item, Result]) -> bool:
        """Queue ``waiter``; True when the caller must lead (fewer than ``in_flight`` leaders)."""
        with self._lock:
            self._queue.append(waiter)
            lead = self._leaders < self._in_flight
            self._leaders += lead
        return lead

    def submit_later(
        self, items: Sequence[Item], callback: Callable[[list[Result], BaseException | None], None]
    ) -> None:
        """Queue ``items``; ``callback(results, error)`` runs (on the leading thread) when done."""
        if self._enqueue(_Waiter(items, callback=callback)):
            with self._lock:
                if self._worker is None:
                    self._worker = ThreadPoolExecutor(self._in_flight, thread_name_prefix="group-commit")
                worker = self._worker
            worker.submit(self._lead)

    def submit(self, items: Sequence[Item]) -> list[Result]:
        waiter: _Waiter[Item, Result] = _Waiter(items)
        if self._enqueue(waiter):
            self._lead()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.results

    def _take(self) -> list[_Waiter[Item, Result]]:
        with self._lock:
            taken: list[_Waiter[Item, Result]] = []
            size = 0
            while self._queue and (not taken or size + len(self._queue[0].items) <= self._max_batch):
                waiter = self._queue.pop(0)
                taken.append(waiter)
                size += len(waiter.items)
            if not taken:
                self._leaders -= 1
            return taken

    def _lead(self) -> None:
        while True:
            error: BaseException | None = None
            with self._serial:
                batch = self._take()
                if not batch:
                    return
                try:
                    prepared = self._prepare([item for waiter in batch for item in waiter.items])
                except BaseException as err:  # every waiter of the failed batch gets the error
                    error = err
            results: list[Result] = []
            if error is None:
                try:
                    results = self._finish(prepared)
                except BaseException as err:
                    error = err
            offset = 0
            for waiter in batch:
                if error is None:
                    waiter.results = results[offset : offset + len(waiter.items)]
                    offset += len(waiter.items)
                waiter.error = error
                waiter.done.set()
                if waiter.callback is not None:
                    waiter.callback(waiter.results, waiter.error)
