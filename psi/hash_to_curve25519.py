"""Hashing byte strings to curve25519 (RFC 9380 §6.7.1 Elligator 2, suites ``curve25519_XMD:SHA-512_ELL2_*``).

Two suites are implemented and checked against RFC 9380's published vectors (Appendix J.4.1 RO,
J.4.2 NU; ``tests/vectors/rfc9380_curve25519_xmd_sha512_ell2_ro.json``):

- ``hash_to_curve`` (``_RO_``): two field elements, two Elligator 2 maps, a point addition and
  cofactor clearing. The addition needs both mapped points' v-coordinates, i.e. two square roots
  (field exponentiations) per identifier.
- ``encode_to_curve`` (``_NU_``): one field element, one map, cofactor clearing.

The PSI hot path (``encode_to_u``) is the NU suite *without* the square root: X25519 works on
u-coordinates only, so the v-coordinate that the map computes last (RFC 9380 §6.7.1 steps 13-15)
is never needed, and cofactor clearing is done by the clamped X25519 scalar itself (RFC 7748 §5:
every clamped scalar is a multiple of 8). That leaves one inversion and one Legendre symbol per
identifier (gmpy2), a few microseconds against tens for the RO suite.

Why NU is sound for semi-honest DH-PSI: the simulation-based proof (Huberman, Franklin and Hogg,
EC 1999; the DDH argument of Ion et al., "On Deploying Secure Computing: Private Intersection-Sum-
with-Cardinality", EuroS&P 2020, §3) programs the random oracle H(x) = r·G for a known r. With NU,
H = map(hash_to_field(x)) where hash_to_field is the random oracle (expand_message_xmd, RFC 9380
§5.2) and Elligator 2 is efficiently invertible (Bernstein, Hamburg, Krasnova, Lange, "Elligator",
CCS 2013, §5): the reduction picks r, keeps r·G with probability (preimage count)/2, and programs
hash_to_field(x) to a random preimage — exactly the real output distribution, at the cost of an
expected two tries. The reduction to DDH in the prime-order subgroup therefore goes through; what
NU lacks is indifferentiability from a random oracle into the *whole* group, which this protocol
does not use. Collisions of H need collisions of hash_to_field (≤ 2 preimages per point), so they
are as unlikely as SHA-512 collisions on 48-byte outputs.

Field arithmetic goes through gmpy2 (Python's ``pow`` on 255-bit numbers is ~15× slower here).
The map is not constant time: it only ever runs on the node's own identifiers, inside the node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

import gmpy2

from psi.hash_to_curve import _dst_prime, expand_message_xmd

__all__ = [
    "FIELD_P",
    "X25519_DST",
    "A",
    "Point",
    "encode_to_curve",
    "encode_to_u",
    "encode_to_u_batch",
    "hash_to_curve",
    "hash_to_field",
    "iter_encode_to_u",
    "map_to_curve_elligator2",
]

# RFC 7748 §4.1: curve25519, v^2 = u^3 + A u^2 + u over GF(2^255 - 19).
FIELD_P = 2**255 - 19
A = 486662
_P = gmpy2.mpz(FIELD_P)
_A = gmpy2.mpz(A)
_Z = 2  # RFC 9380 §8.5: Z = 2 for curve25519
_L = 48  # RFC 9380 §5: ceil((ceil(log2(p)) + k) / 8) with k = 128
_SQRT_M1 = gmpy2.powmod(2, (_P - 1) // 4, _P)  # RFC 9380 Appendix I.2: c1 = sqrt(-1)
_SQRT_EXP = (_P + 3) // 8  # Appendix I.2: c2 = (q + 3) / 8, for q = 5 mod 8
_H_EFF = 8  # RFC 9380 §8.5: cofactor clearing multiplies by 8

# RFC 9380 §3.1: the DST names protocol, version and suite so two uses never collide.
X25519_DST = b"LOYALFED-PSI-V01-CS02-with-curve25519_XMD:SHA-512_ELL2_NU_"

Point = tuple[int, int] | None
"""An affine point (u, v) of curve25519; None is the point at infinity."""


def hash_to_field(msg: bytes, dst: bytes, count: int) -> list[int]:
    """RFC 9380 §5.2 ``hash_to_field`` into GF(p) with expand_message_xmd SHA-512, m = 1, L = 48."""
    uniform = expand_message_xmd(msg, dst, count * _L)
    return [int.from_bytes(uniform[i * _L : (i + 1) * _L], "big") % FIELD_P for i in range(count)]


def _is_square(x: int) -> bool:
    # RFC 9380 §4: is_square(0) is true; the Jacobi symbol equals the Legendre symbol for prime p.
    return gmpy2.jacobi(x, _P) != -1


def _sqrt(x: int) -> int:
    """RFC 9380 Appendix I.2 ``sqrt_5mod8``: a square root of a square ``x``."""
    tv1 = gmpy2.powmod(x, _SQRT_EXP, _P)
    return int(tv1) if tv1 * tv1 % _P == x % _P else int(tv1 * _SQRT_M1 % _P)


def _elligator2_x(u: int) -> tuple[int, int, bool]:
    """RFC 9380 §6.7.1 steps 1-12: the x-coordinate, x^3 + A x^2 + x, and whether x = x1."""
    t1 = _Z * u * u % _P
    if t1 == _P - 1:  # steps 2-3: the exceptional case maps as t1 = 0
        t1 = gmpy2.mpz(0)
    x1 = -_A * gmpy2.invert(t1 + 1, _P) % _P
    gx1 = x1 * (x1 * (x1 + _A) + 1) % _P
    if _is_square(gx1):
        return int(x1), int(gx1), True
    x2 = (-x1 - _A) % _P
    return int(x2), int(t1 * gx1 % _P), False


def map_to_curve_elligator2(u: int) -> tuple[int, int]:
    """RFC 9380 §6.7.1 ``map_to_curve_elligator2`` for curve25519 (K = 1, J = A): the point (s, t)."""
    x, y2, e2 = _elligator2_x(u)
    y = _sqrt(y2)
    if e2 != (y % 2 == 1):  # steps 14-15: sgn0(y) == 1 iff e2 (RFC 9380 §4.1 sgn0 for m = 1)
        y = (-y) % FIELD_P
    return x, y


def _add(p1: Point, p2: Point) -> Point:
    """Affine addition on the Montgomery curve v^2 = u^3 + A u^2 + u (B = 1)."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % FIELD_P == 0:
            return None
        slope = (3 * x1 * x1 + 2 * A * x1 + 1) * gmpy2.invert(2 * y1, _P) % _P
    else:
        slope = (y2 - y1) * gmpy2.invert(x2 - x1, _P) % _P
    x3 = (slope * slope - A - x1 - x2) % _P
    return int(x3), int((slope * (x1 - x3) - y1) % _P)


def _clear_cofactor(point: Point) -> Point:
    for _ in range(_H_EFF.bit_length() - 1):  # h_eff = 8: three doublings
        point = _add(point, point)
    return point


def hash_to_curve(msg: bytes, dst: bytes) -> Point:
    """RFC 9380 §3 ``hash_to_curve`` for ``curve25519_XMD:SHA-512_ELL2_RO_``."""
    u0, u1 = hash_to_field(msg, dst, 2)
    return _clear_cofactor(_add(map_to_curve_elligator2(u0), map_to_curve_elligator2(u1)))


def encode_to_curve(msg: bytes, dst: bytes) -> Point:
    """RFC 9380 §3 ``encode_to_curve`` for ``curve25519_XMD:SHA-512_ELL2_NU_``."""
    (u,) = hash_to_field(msg, dst, 1)
    return _clear_cofactor(map_to_curve_elligator2(u))


def encode_to_u(msg: bytes, dst: bytes = X25519_DST) -> bytes:
    """The RFC 7748 u-coordinate encoding of ``map_to_curve(hash_to_field(msg))`` (NU, before
    cofactor clearing, which the clamped X25519 scalar performs)."""
    return encode_to_u_batch([msg], dst)[0]


def encode_to_u_batch(items: Sequence[bytes], dst: bytes = X25519_DST) -> list[bytes]:
    """``encode_to_u`` for many items (see ``iter_encode_to_u``)."""
    return list(iter_encode_to_u(items, dst))


def iter_encode_to_u(items: Iterable[bytes], dst: bytes = X25519_DST) -> Iterator[bytes]:
    """``encode_to_u`` for many items, lazily, with the SHA-512 prefix of expand_message_xmd shared.

    For len_in_bytes = 48 there is one output block: b_1 = H(b_0 || 0x01 || DST'), truncated
    (RFC 9380 §5.3.1 steps 6-11); the 128 zero bytes of Z_pad are absorbed once. Lazy so that a
    worker thread interleaves each encoding with its GIL-free X25519 call: encoding a whole range
    first holds the GIL for milliseconds, and the other worker, back from C, waits a full switch
    interval (5 ms) for every element it blinds — measured as one core busy instead of two.
    """
    dst_prime = _dst_prime(dst)
    prefix = hashlib.sha512(bytes(128))
    tail = _L.to_bytes(2, "big") + b"\x00" + dst_prime
    one = b"\x01" + dst_prime
    sha512, invert, jacobi, p, a = hashlib.sha512, gmpy2.invert, gmpy2.jacobi, _P, _A
    for msg in items:
        state = prefix.copy()
        state.update(msg + tail)
        u = gmpy2.mpz(int.from_bytes(sha512(state.digest() + one).digest()[:_L], "big")) % p
        # RFC 9380 §6.7.1 steps 1-11, inlined: x only (X25519 never needs v).
        t1 = _Z * u * u % p
        if t1 == p - 1:
            t1 = gmpy2.mpz(0)
        x = -a * invert(t1 + 1, p) % p
        if jacobi(x * (x * (x + a) + 1), p) == -1:
            x = (-x - a) % p
        yield int(x).to_bytes(32, "little")
