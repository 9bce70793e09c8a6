"""Group commit: concurrent transfer requests share one reservation transaction and one peer message.

Each caller submits its own request and waits for its own receipt; whichever caller finds no batch
in progress leads: it takes everything queued so far, runs it as one batch, hands each waiter its
receipts, and repeats until the queue is empty. Under load a batch forms while the previous one
is in flight, with no added delay when idle (the technique of database group commit and of
TigerBeetle's request batching).

``submit_later`` is the same for a caller that must not block (an async request handler): its
callback gets the receipts, and if it finds no batch in progress the batch runs on this object's
own worker thread, so a waiting request holds no thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Waiter(Generic[Item, Result]):
    items: Sequence[Item]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Result] = field(default_factory=list)
    error: BaseException | None = None
    callback: Callable[[list[Result], BaseException | None], None] | None = None


class GroupCommit(Generic[Item, Result]):
    def __init__(self, process: Callable[[list[Item]], list[Result]], *, max_batch: int = 1_000) -> None:
        self._process, self._max_batch = process, max_batch
        self._queue: list[_Waiter[Item, Result]] = []
        self._lock = threading.Lock()
        self._leading = False
        self._worker: ThreadPoolExecutor | None = None

    def _enqueue(self, waiter: _Waiter[Item, Result]) -> bool:
        """Queue ``waiter``; True when the caller must lead (no batch in progress)."""
        with self._lock:
            self._queue.append(waiter)
            lead = not self._leading
            self._leading = self._leading or lead
        return lead

    def submit_later(
        self, items: Sequence[Item], callback: Callable[[list[Result], BaseException | None], None]
    ) -> None:
        """Queue ``items``; ``callback(results, error)`` runs (on the leading thread) when done."""
        if self._enqueue(_Waiter(items, callback=callback)):
            with self._lock:
                if self._worker is None:
                    self._worker = ThreadPoolExecutor(1, thread_name_prefix="group-commit")
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
                self._leading = False
            return taken

    def _lead(self) -> None:
        while batch := self._take():
            try:
                results = self._process([item for waiter in batch for item in waiter.items])
                offset = 0
                for waiter in batch:
                    waiter.results = results[offset : offset + len(waiter.items)]
                    offset += len(waiter.items)
            except BaseException as err:  # every waiter of the failed batch gets the error
                for waiter in batch:
                    waiter.error = err
            for waiter in batch:
                waiter.done.set()
                if waiter.callback is not None:
                    waiter.callback(waiter.results, waiter.error)
