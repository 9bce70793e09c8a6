"""The X25519 group backend: blinding by RFC 7748 X25519 on curve25519 u-coordinates.

Blinding an element is X25519(k, u) with a fresh 32-byte random k per session. RFC 7748 §5
clamps k (clears bits 0-2 and 255, sets bit 254), so every effective scalar is a multiple of the
cofactor 8: the result always lies in the prime-order subgroup whatever small-order component the
input had, and clamped scalars commute on u-coordinates,
X25519(a, X25519(b, P)) = X25519(b, X25519(a, P)) = u(8·a'·b'·P) — the equality ECDH-PSI needs
(Meadows, IEEE S&P 1986; Huberman, Franklin and Hogg, EC 1999; Facebook's Private-ID, Buddhavarapu
et al., ePrint 2020/599, which also uses curve25519). A u-coordinate names ±P; both parties compare
u-coordinates of the same doubly blinded points, so correctness is unaffected.

The scalar multiplication is libsodium's ``crypto_scalarmult_curve25519`` (the RFC 7748 function;
``cryptography``'s X25519 computes the same values — a test checks interoperability) called through
``ctypes``, which releases the GIL. ``cryptography``'s ``exchange`` holds it: two threads calling it
reached 0.47 CPU-seconds per wall second, against 0.99 for the ``ctypes`` call in the same run
(2 cores shared with other work, load ≈ 2), so worker threads would not scale with it and a process
pool would have been needed. Both cost ≈ 36 µs per call here (AMD EPYC), ristretto255 ≈ 58 µs.

Every received element is validated before use (``validate_element``): 32 bytes, canonical
(u < p, top bit clear — RFC 7748 §5 says implementations *mask* it, which would accept two
encodings of one element), not a small-order u-coordinate (the libsodium blocklist; cr.yp.to/ecdh
"Which public keys are weak?"), on the curve and not its twist (Legendre symbol of
u^3 + A u^2 + u), and X25519's all-zero output is refused.

The range functions (``hash_and_blind_range``, ``blind_range``, ``blind_range_to_tags``) have two
implementations with byte-identical results and errors: the C extension ``psi._x25519_batch``
(built by setup.py when a compiler and GMP are present; whole ranges in C with the GIL released,
calling the same libsodium through function pointers handed over by ``_configure_c``) and the
Python code below, the reference. ``BACKEND`` says which one runs by default. The C path exists
because the Python glue around each 35 µs scalar multiplication (hashing to the field, Elligator 2,
validation, tagging) cost ≈ 12 µs per element per party, ~15 % of a run's CPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from types import ModuleType

import gmpy2
from rbcl._sodium import _sodium

from psi.errors import InvalidElementError, PsiError, PsiProtocolError
from psi.hash_to_curve import _dst_prime
from psi.hash_to_curve25519 import FIELD_P, X25519_DST, A, iter_encode_to_u
from psi.ristretto255 import ELEMENT_BYTES, Rng

__all__ = [
    "BACKEND",
    "SMALL_ORDER_U",
    "X25519_RULE",
    "X25519Backend",
    "blind_range",
    "blind_range_to_tags",
    "element_problem",
    "hash_and_blind_range",
    "random_key",
    "x25519",
]


class X25519Backend(StrEnum):
    """Which implementation runs the range functions."""

    C = "c"  # psi._x25519_batch
    PYTHON = "python"  # the reference code of this module


X25519_RULE = "not a canonical curve25519 u-coordinate of a point of large order (RFC 7748 §5)"

# u-coordinates of the points of order 1, 2, 4 and 8 (canonical ones; libsodium's blocklist also
# lists the non-canonical p, p + 1 and the 2^255 - 1 family, which the canonical check refuses).
SMALL_ORDER_U = frozenset(
    {
        0,
        1,
        FIELD_P - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    }
)

_LIB = ctypes.CDLL(_sodium._name)
_SCALARMULT = _LIB.crypto_scalarmult_curve25519
_SCALARMULT.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
_SCALARMULT.restype = ctypes.c_int
_P = gmpy2.mpz(FIELD_P)
_A = gmpy2.mpz(A)


def _configure_c() -> ModuleType | None:
    """The C extension, wired to the libsodium this module uses (rbcl's, with the CVE-2025-69277
    fix), or None where it was not built."""
    try:
        _x25519_batch = importlib.import_module("psi._x25519_batch")
    except ImportError:  # optional build (setup.py): no compiler or no GMP on this machine
        return None
    _LIB.crypto_hash_sha512_statebytes.restype = ctypes.c_size_t
    names = ["scalarmult_curve25519", "hash_sha512_init", "hash_sha512_update", "hash_sha512_final"]
    names.append("generichash_blake2b_salt_personal")
    addresses = [ctypes.cast(getattr(_LIB, f"crypto_{name}"), ctypes.c_void_p).value for name in names]
    blocklist = b"".join(u.to_bytes(ELEMENT_BYTES, "little") for u in sorted(SMALL_ORDER_U))
    _x25519_batch.configure(*addresses, _LIB.crypto_hash_sha512_statebytes(), blocklist)
    return _x25519_batch


_BATCH = _configure_c()
BACKEND = X25519Backend.C if _BATCH is not None else X25519Backend.PYTHON
"""The implementation the range functions use unless told otherwise."""


def random_key(rng: Rng = os.urandom) -> bytes:
    """A fresh X25519 private key: 32 random bytes (RFC 7748 §5 clamps them at every use)."""
    return rng(32)


def x25519(key: bytes, u: bytes) -> bytes:
    """RFC 7748 X25519(key, u); raises ``ValueError`` on libsodium's refusal (all-zero output)."""
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    if _SCALARMULT(ctypes.addressof(out), key, u) != 0:
        raise ValueError("X25519 refused the input (small order or all-zero result)")
    return out.raw


def element_problem(encoding: bytes) -> str | None:
    """Why a received u-coordinate is unacceptable, or None if it is a valid element."""
    if len(encoding) != ELEMENT_BYTES:
        return "wrong length"
    if encoding[31] & 0x80:
        return "non-canonical (top bit set)"
    u = int.from_bytes(encoding, "little")
    if u >= FIELD_P:
        return "non-canonical (u >= p)"
    if u in SMALL_ORDER_U:
        return "small-order element"
    mu = gmpy2.mpz(u)
    if gmpy2.jacobi(mu * (mu * (mu + _A) + 1), _P) != 1:
        return "twist point (not on curve25519)"
    return None


def hash_and_blind_range(
    items: Sequence[bytes],
    key: bytes,
    dst: bytes = X25519_DST,
    *,
    first: int = 0,
    backend: X25519Backend = BACKEND,
) -> bytes:
    """X25519(key, encode_to_u(item)) for every item, as one blob.

    ``first`` is the position of ``items[0]`` in the caller's batch, so that an error names it.
    """
    _check_key(key)
    if (batch := _c_module(backend)) is not None:
        try:
            return batch.hash_and_blind(items, key, _dst_prime(dst))
        except batch.ElementRejected as err:
            raise _small_order_hash(first + err.args[0]) from err
    out = ctypes.create_string_buffer(len(items) * ELEMENT_BYTES)
    base = ctypes.addressof(out)
    for i, u in enumerate(iter_encode_to_u(items, dst)):
        # The map yields a small-order u only for a negligible set of field elements; libsodium
        # refuses those, and so do we, naming the position.
        if _SCALARMULT(base + i * ELEMENT_BYTES, key, u) != 0:
            raise _small_order_hash(first + i)
    return out.raw


def blind_range(
    blob: bytes,
    key: bytes,
    lo: int,
    hi: int,
    *,
    message: str,
    chunk: int,
    backend: X25519Backend = BACKEND,
) -> bytes:
    """X25519(key, e) for the received elements ``lo..hi`` of ``blob``; rejects invalid ones by index."""
    _check_range(blob, key, lo, hi, message=message, chunk=chunk)
    if (batch := _c_module(backend)) is not None:
        try:
            return batch.blind(blob, key, lo, hi)
        except batch.ElementRejected as err:
            raise _rejection(blob, *err.args, message=message, chunk=chunk) from err
    return b"".join(_blinded(blob, key, lo, hi, message=message, chunk=chunk))


def blind_range_to_tags(
    blob: bytes,
    key: bytes,
    lo: int,
    hi: int,
    tag_bytes: int,
    *,
    person: bytes,
    message: str,
    chunk: int,
    backend: X25519Backend = BACKEND,
) -> bytes:
    """BLAKE2b(X25519(key, e), digest_size=tag_bytes, person=person) for the received elements
    ``lo..hi`` (RFC 7693), each tagged right after its X25519 call so that no long GIL-holding
    stretch stalls the other worker (see iter_encode_to_u)."""
    _check_range(blob, key, lo, hi, message=message, chunk=chunk)
    if (batch := _c_module(backend)) is not None:
        try:
            return batch.blind_to_tags(blob, key, lo, hi, tag_bytes, person)
        except batch.ElementRejected as err:
            raise _rejection(blob, *err.args, message=message, chunk=chunk) from err
    blake2b = hashlib.blake2b
    return b"".join(
        blake2b(e, digest_size=tag_bytes, person=person).digest()
        for e in _blinded(blob, key, lo, hi, message=message, chunk=chunk)
    )


def _blinded(blob: bytes, key: bytes, lo: int, hi: int, *, message: str, chunk: int) -> Iterator[bytes]:
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    address = ctypes.addressof(out)
    p, a, jacobi, small = _P, _A, gmpy2.jacobi, SMALL_ORDER_U
    for i in range(lo, hi):
        element = blob[i * ELEMENT_BYTES : (i + 1) * ELEMENT_BYTES]
        u = int.from_bytes(element, "little")
        # Inlined element_problem (this loop runs 10^6 times): canonical, large order, on the curve.
        if element[31] & 0x80 or u >= FIELD_P or u in small or jacobi(u * (u * (u + a) + 1) % p, p) != 1:
            raise _rejection(blob, i, _INVALID, message=message, chunk=chunk)
        if _SCALARMULT(address, key, element) != 0:
            raise _rejection(blob, i, _ALL_ZERO, message=message, chunk=chunk)
        yield out.raw


# The rejection kinds psi._x25519_batch.ElementRejected carries as (index, kind).
_INVALID, _ALL_ZERO = "invalid", "all-zero"


def _rejection(blob: bytes, index: int, kind: str, *, message: str, chunk: int) -> InvalidElementError:
    if kind == _ALL_ZERO:
        return InvalidElementError(message, chunk, index, rule=f"all-zero X25519 output; {X25519_RULE}")
    element = blob[index * ELEMENT_BYTES : (index + 1) * ELEMENT_BYTES]
    return InvalidElementError(message, chunk, index, rule=f"{element_problem(element)}; {X25519_RULE}")


def _small_order_hash(index: int) -> InvalidElementError:
    return InvalidElementError("hash_to_group", 0, index, "small-order hash", rule=X25519_RULE)


def _c_module(backend: X25519Backend) -> ModuleType | None:
    if backend == X25519Backend.PYTHON:
        return None
    if _BATCH is None:
        raise PsiError("the C backend psi._x25519_batch is not built in this environment")
    return _BATCH


def _check_key(key: bytes) -> None:
    if len(key) != 32:
        raise ValueError(f"an X25519 key is 32 bytes, got {len(key)}")


def _check_range(blob: bytes, key: bytes, lo: int, hi: int, *, message: str, chunk: int) -> None:
    _check_key(key)
    if len(blob) % ELEMENT_BYTES or not 0 <= lo <= hi <= len(blob) // ELEMENT_BYTES:
        raise PsiProtocolError(
            f"message {message!r} chunk {chunk}: elements {lo}..{hi} are not inside {len(blob)} bytes"
        )
