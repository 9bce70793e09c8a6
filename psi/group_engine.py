"""Batched group work on both cores: hashing to the group, blinding, tagging.

Two groups (``psi.wire.PsiGroup``): ristretto255 (libsodium, ``psi.ristretto255``) and X25519 on
curve25519 u-coordinates (``psi.x25519``); each call names the session's group.

Elements travel as *blobs*: ``n * 32`` bytes, one canonical encoding after another, the same
layout as on the wire, so a chunk is never split into a million small Python objects. Each batch
is cut into ranges that worker threads process; the libsodium calls go through ``ctypes``, which
releases the GIL, so two threads keep two cores busy (measured ≈ 1.7× on this 2-core machine).
For X25519 a whole range runs in C with the GIL released when ``psi._x25519_batch`` is built
(``psi.x25519.BACKEND``).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Protocol

from rbcl._sodium import _sodium

from psi import x25519
from psi.errors import InvalidElementError, PsiProtocolError
from psi.hash_to_curve import PSI_DST, hash_to_ristretto255_batch
from psi.hash_to_curve25519 import X25519_DST
from psi.ristretto255 import ELEMENT_BYTES, IDENTITY, Rng, random_scalar
from psi.wire import DEFAULT_GROUP, PsiGroup

__all__ = ["TAG_PERSON", "GroupEngine", "random_key", "split_elements", "tag_of"]

# Our own function objects on libsodium (rbcl's handle keeps its own untouched), typed so that
# an output address can be passed as an integer offset into one preallocated buffer.
_LIB = ctypes.CDLL(_sodium._name)
_SCALARMULT = _LIB.crypto_scalarmult_ristretto255
_SCALARMULT.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
_SCALARMULT.restype = ctypes.c_int
_FROM_HASH = _LIB.crypto_core_ristretto255_from_hash
_FROM_HASH.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_FROM_HASH.restype = ctypes.c_int

_RANGES_PER_WORKER = 4

# BLAKE2b personalisation of comparison tags (RFC 7693 §2.8: 16 bytes).
TAG_PERSON = b"loyalfed-psi-tag"


def random_key(group: PsiGroup, rng: Rng = os.urandom) -> bytes:
    """A fresh session key for ``group`` (never reuse one across sessions: it links runs)."""
    return x25519.random_key(rng) if group == PsiGroup.X25519 else random_scalar(rng)


def tag_of(element: bytes, tag_bytes: int) -> bytes:
    """The truncated comparison tag of a doubly blinded element (BLAKE2b, RFC 7693)."""
    return hashlib.blake2b(element, digest_size=tag_bytes, person=TAG_PERSON).digest()


def split_elements(blob: bytes, *, message: str, chunk: int) -> list[bytes]:
    """Cut a blob into 32-byte encodings; a ragged length is a protocol error."""
    if len(blob) % ELEMENT_BYTES:
        raise PsiProtocolError(
            f"message {message!r} chunk {chunk}: {len(blob)} bytes is not a whole number of elements"
        )
    return [blob[i : i + ELEMENT_BYTES] for i in range(0, len(blob), ELEMENT_BYTES)]


class GroupEngine:
    """A pool of worker threads for batched group operations. Use as a context manager.

    Parameters
    ----------
    workers
        Threads to use; defaults to the number of CPUs.
    dst, x25519_dst
        Domain separation tags for hashing to ristretto255 and to curve25519 (RFC 9380 §3.1).
    """

    def __init__(
        self, workers: int | None = None, *, dst: bytes = PSI_DST, x25519_dst: bytes = X25519_DST
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.dst = dst
        self.x25519_dst = x25519_dst
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __enter__(self) -> GroupEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _map_ranges(self, count: int, work: Callable[[int, int], bytes]) -> bytes:
        if count == 0:
            return b""
        if self.workers == 1 or count < 256:
            return work(0, count)
        with self._pool_lock:  # one pool even when several sessions start at once
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="psi-group")
        parts = self.workers * _RANGES_PER_WORKER
        bounds = [count * i // parts for i in range(parts + 1)]
        futures = [self._pool.submit(work, lo, hi) for lo, hi in itertools.pairwise(bounds)]
        return b"".join(f.result() for f in futures)

    def hash_and_blind(
        self, items: Sequence[bytes], scalar: bytes, *, group: PsiGroup = DEFAULT_GROUP
    ) -> bytes:
        """``scalar * H(item)`` for every item, as one blob in the items' order."""
        if group == PsiGroup.X25519:
            return self._map_ranges(
                len(items),
                lambda lo, hi: x25519.hash_and_blind_range(items[lo:hi], scalar, self.x25519_dst, first=lo),
            )

        def work(lo: int, hi: int) -> bytes:
            uniform = hash_to_ristretto255_batch(items[lo:hi], self.dst)
            out = ctypes.create_string_buffer((hi - lo) * ELEMENT_BYTES)
            base = ctypes.addressof(out)
            point = ctypes.create_string_buffer(ELEMENT_BYTES)
            for i, u in enumerate(uniform):
                _FROM_HASH(ctypes.addressof(point), u)
                # The map never yields the identity for SHA-512 output except with negligible
                # probability; scalarmult refuses it anyway (non-zero return).
                if _SCALARMULT(base + i * ELEMENT_BYTES, scalar, point.raw) != 0:
                    raise InvalidElementError("hash_to_group", 0, lo + i, "identity hash")
            return out.raw

        return self._map_ranges(len(items), work)

    def blind(
        self, blob: bytes, scalar: bytes, *, message: str, chunk: int, group: PsiGroup = DEFAULT_GROUP
    ) -> bytes:
        """``scalar * e`` for every received element ``e``; rejects invalid ones by index."""
        count = _count(blob, message=message, chunk=chunk)
        blind_range = _BLIND_RANGE[group]
        return self._map_ranges(
            count, lambda lo, hi: blind_range(blob, scalar, lo, hi, message=message, chunk=chunk)
        )

    def blind_to_tags(
        self,
        blob: bytes,
        scalar: bytes,
        tag_bytes: int,
        *,
        message: str,
        chunk: int,
        group: PsiGroup = DEFAULT_GROUP,
    ) -> bytes:
        """Blind every received element and keep only its ``tag_bytes``-byte comparison tag."""
        count = _count(blob, message=message, chunk=chunk)
        blind_range = _BLIND_RANGE[group]
        if group == PsiGroup.X25519:
            return self._map_ranges(
                count,
                lambda lo, hi: x25519.blind_range_to_tags(
                    blob, scalar, lo, hi, tag_bytes, person=TAG_PERSON, message=message, chunk=chunk
                ),
            )

        def work(lo: int, hi: int) -> bytes:
            blinded = blind_range(blob, scalar, lo, hi, message=message, chunk=chunk)
            return b"".join(
                tag_of(blinded[j : j + ELEMENT_BYTES], tag_bytes)
                for j in range(0, len(blinded), ELEMENT_BYTES)
            )

        return self._map_ranges(count, work)


def _blind_range(blob: bytes, scalar: bytes, lo: int, hi: int, *, message: str, chunk: int) -> bytes:
    out = ctypes.create_string_buffer((hi - lo) * ELEMENT_BYTES)
    base = ctypes.addressof(out)
    for i in range(lo, hi):
        element = blob[i * ELEMENT_BYTES : (i + 1) * ELEMENT_BYTES]
        # libsodium returns -1 for a non-canonical encoding or an identity result
        # (RFC 9496 §4.3.1); the identity input is the only way to reach the latter.
        if _SCALARMULT(base + (i - lo) * ELEMENT_BYTES, scalar, element) != 0:
            reason = "identity element" if element == IDENTITY else "invalid element"
            raise InvalidElementError(message, chunk, i, reason)
    return out.raw


class _RangeBlinder(Protocol):
    def __call__(
        self, blob: bytes, key: bytes, lo: int, hi: int, /, *, message: str, chunk: int
    ) -> bytes: ...


_BLIND_RANGE: dict[PsiGroup, _RangeBlinder] = {
    PsiGroup.RISTRETTO255: _blind_range,
    PsiGroup.X25519: x25519.blind_range,
}


def _count(blob: bytes, *, message: str, chunk: int) -> int:
    if len(blob) % ELEMENT_BYTES:
        raise PsiProtocolError(
            f"message {message!r} chunk {chunk}: {len(blob)} bytes is not a whole number of elements"
        )
    return len(blob) // ELEMENT_BYTES
