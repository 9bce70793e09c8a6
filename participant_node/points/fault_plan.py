"""A seeded fault plan for node-to-node messages: drop, duplicate and reorder, replayable from the seed.

In the spirit of TigerBeetle's simulator (VOPR) and FoundationDB's deterministic testing: every
fault is a pure function of the seed, the message (its path and body digest) and how many times
that message was sent before, so the same seed injects the same faults into the same messages in
any run, whatever the thread timing. ``FaultyTransport`` wraps a real httpx transport (the mTLS
connection stays real) and faults both directions of every exchange:

requests (the caller's message to the peer)
- ``drop_request``: the message never leaves (the caller sees a connection error);
- ``duplicate``: the peer receives it twice;
- ``delay``: the caller sees a timeout now, and the message arrives later, after newer ones
  (reordering);

replies (the peer's answer, e.g. the source's answer to the receiver's recovery queries)
- ``drop_response``: the peer processes the message, the answer is lost (the caller sees a read
  timeout);
- ``duplicate_reply``: the caller gets the answer, and a copy of it arrives again later, as the
  answer to a newer message on the same endpoint;
- ``delay_reply``: the caller sees a timeout now; the answer arrives later, in place of the answer
  to a newer message on the same endpoint (an old answer overtaking a new one: reordering).

An answer delivered late takes the place of the newer message's own answer, which is lost: the
caller must accept only answers about what it asked (``PeerClient`` checks the transfer ids) and
must be safe with an answer that is true but old (every state a peer reports only moves forward).
Which message meets which fault is fixed by the seed; which newer message a held answer lands on
depends on timing. A message is faulted on at most ``max_faults_per_message`` attempts, so retries
get through. ``RecordingTransport`` keeps every byte sent and received, for the capture test.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum

import httpx

__all__ = ["Fault", "FaultPlan", "FaultyTransport", "RecordingTransport"]

_LOG = logging.getLogger(__name__)


class Fault(StrEnum):
    NONE = "none"
    DROP_REQUEST = "drop_request"
    DROP_RESPONSE = "drop_response"
    DUPLICATE = "duplicate"
    DELAY = "delay"
    DUPLICATE_REPLY = "duplicate_reply"
    DELAY_REPLY = "delay_reply"


@dataclass(frozen=True)
class FaultPlan:
    """Per-message fault rates (each in [0, 1), summing to < 1) and the seed that picks them."""

    seed: int
    drop_request: float = 0.05
    drop_response: float = 0.05
    duplicate: float = 0.05
    delay: float = 0.05
    duplicate_reply: float = 0.05
    delay_reply: float = 0.05
    max_delay_s: float = 0.3
    max_faults_per_message: int = 2

    def __post_init__(self) -> None:
        rates = self._rates().values()
        if any(r < 0 for r in rates) or sum(rates) >= 1:
            raise ValueError("fault rates must be non-negative and sum to less than 1")

    def _uniform(self, message: bytes, attempt: int, salt: bytes) -> float:
        digest = hmac.new(
            self.seed.to_bytes(8, "big", signed=True),
            salt + message + attempt.to_bytes(4, "big"),
            hashlib.sha256,
        ).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def fault(self, message: bytes, attempt: int) -> Fault:
        """The fault for the ``attempt``-th sending of ``message`` (0-based)."""
        if attempt >= self.max_faults_per_message:
            return Fault.NONE
        u = self._uniform(message, attempt, b"fault")
        for kind, rate in self._rates().items():
            if u < rate:
                return kind
            u -= rate
        return Fault.NONE

    @classmethod
    def uniform(cls, seed: int, rate: float) -> FaultPlan:
        """Every kind of fault at ``rate``."""
        return cls(seed, rate, rate, rate, rate, rate, rate)

    def _rates(self) -> dict[Fault, float]:
        return {
            Fault.DROP_REQUEST: self.drop_request,
            Fault.DROP_RESPONSE: self.drop_response,
            Fault.DUPLICATE: self.duplicate,
            Fault.DELAY: self.delay,
            Fault.DUPLICATE_REPLY: self.duplicate_reply,
            Fault.DELAY_REPLY: self.delay_reply,
        }

    def delay_of(self, message: bytes, attempt: int) -> float:
        return self.max_delay_s * self._uniform(message, attempt, b"delay")


@dataclass
class FaultyTransport(httpx.BaseTransport):
    """Applies a ``FaultPlan`` to every request through ``inner`` and to the peer's answers."""

    inner: httpx.BaseTransport
    plan: FaultPlan
    injected: Counter[str] = field(default_factory=Counter)
    _attempts: Counter[bytes] = field(default_factory=Counter)
    _held: dict[str, deque[httpx.Response]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        path = request.url.path
        message = hashlib.sha256(path.encode() + b"\0" + body).digest()
        with self._lock:
            attempt = self._attempts[message]
            self._attempts[message] += 1
        fault = self.plan.fault(message, attempt)
        endpoint = path.rsplit("/", 1)[-1]
        with self._lock:
            self.injected[fault] += 1
            self.injected[f"{endpoint}:{fault}"] += 1
        if fault is not Fault.NONE:  # the node's log keeps the plan's record across restarts
            _LOG.warning("fault plan: %s on %s (attempt %d)", fault, endpoint, attempt)
        if fault is Fault.DROP_REQUEST:
            raise httpx.ConnectError("fault plan: request dropped", request=request)
        if fault is Fault.DELAY:
            delay = self.plan.delay_of(message, attempt)
            threading.Thread(target=self._late, args=(request, body, delay), daemon=True).start()
            raise httpx.ReadTimeout("fault plan: request delayed", request=request)
        response = self._send(request, body)
        if fault is Fault.DUPLICATE:
            response = self._send(request, body)
        if fault is Fault.DROP_RESPONSE:
            raise httpx.ReadTimeout("fault plan: response dropped", request=request)
        if fault is Fault.DELAY_REPLY:
            self._hold(path, response)
            raise httpx.ReadTimeout("fault plan: reply delayed", request=request)
        delivered = self._older_reply(path, request, response)
        if fault is Fault.DUPLICATE_REPLY:
            self._hold(path, response)  # a copy of this answer arrives again later
        return delivered

    def _hold(self, path: str, response: httpx.Response) -> None:
        with self._lock:
            self._held.setdefault(path, deque()).append(response)

    def _older_reply(self, path: str, request: httpx.Request, fresh: httpx.Response) -> httpx.Response:
        """A held answer arrives now, in place of ``fresh`` (lost), over the same verified connection."""
        with self._lock:
            held = self._held.get(path)
            old = held.popleft() if held else None
        if old is None:
            return fresh
        return httpx.Response(
            old.status_code,
            headers=old.headers,
            content=old.content,
            request=request,
            extensions=fresh.extensions,
        )

    def _send(self, request: httpx.Request, body: bytes) -> httpx.Response:
        copy = httpx.Request(
            request.method, request.url, headers=request.headers, content=body, extensions=request.extensions
        )
        response = self.inner.handle_request(copy)
        response.read()
        return response

    def _late(self, request: httpx.Request, body: bytes, delay: float) -> None:
        time.sleep(delay)
        try:
            self._send(request, body)
        except httpx.HTTPError:
            return  # a late copy that cannot be delivered is simply lost

    def close(self) -> None:
        self.inner.close()


@dataclass
class RecordingTransport(httpx.BaseTransport):
    """Keeps every request and response body that passes through ``inner``."""

    inner: httpx.BaseTransport
    captured: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        response = self.inner.handle_request(request)
        content = response.read()
        with self._lock:
            self.captured += [request.url.path.encode() + b"\0" + body, content]
        return response

    def close(self) -> None:
        self.inner.close()
