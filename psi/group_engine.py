"""Batched ristretto255 work on both cores: hashing to the group, blinding, tagging.

Elements travel as *blobs*: ``n * 32`` bytes, one canonical encoding after another, the same
layout as on the wire, so a chunk is never split into a million small Python objects. Each batch
is cut into ranges that worker threads process; the libsodium calls go through ``ctypes``, which
releases the GIL, so two threads keep two cores busy (measured ≈ 1.7× on this 2-core machine).
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

from rbcl._sodium import _sodium

from psi.errors import InvalidElementError, PsiProtocolError
from psi.hash_to_curve import PSI_DST, hash_to_ristretto255_batch
from psi.ristretto255 import ELEMENT_BYTES, IDENTITY

__all__ = ["GroupEngine", "split_elements", "tag_of"]

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


def tag_of(element: bytes, tag_bytes: int) -> bytes:
    """The truncated comparison tag of a doubly blinded element (BLAKE2b, RFC 7693)."""
    return hashlib.blake2b(element, digest_size=tag_bytes, person=b"loyalfed-psi-tag").digest()


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
    dst
        Domain separation tag for hashing to the group (RFC 9380 §3.1).
    """

    def __init__(self, workers: int | None = None, *, dst: bytes = PSI_DST) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.dst = dst
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

    def hash_and_blind(self, items: Sequence[bytes], scalar: bytes) -> bytes:
        """``scalar * H(item)`` for every item, as one blob in the items' order."""

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

    def blind(self, blob: bytes, scalar: bytes, *, message: str, chunk: int) -> bytes:
        """``scalar * e`` for every received element ``e``; rejects invalid ones by index."""
        count = _count(blob, message=message, chunk=chunk)
        return self._map_ranges(
            count, lambda lo, hi: _blind_range(blob, scalar, lo, hi, message=message, chunk=chunk)
        )

    def blind_to_tags(self, blob: bytes, scalar: bytes, tag_bytes: int, *, message: str, chunk: int) -> bytes:
        """Blind every received element and keep only its ``tag_bytes``-byte comparison tag."""
        count = _count(blob, message=message, chunk=chunk)

        def work(lo: int, hi: int) -> bytes:
            blinded = _blind_range(blob, scalar, lo, hi, message=message, chunk=chunk)
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


def _count(blob: bytes, *, message: str, chunk: int) -> int:
    if len(blob) % ELEMENT_BYTES:
        raise PsiProtocolError(
            f"message {message!r} chunk {chunk}: {len(blob)} bytes is not a whole number of elements"
        )
    return len(blob) // ELEMENT_BYTES
