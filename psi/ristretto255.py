"""The ristretto255 prime-order group (RFC 9496) through libsodium, as bundled by ``rbcl``.

ristretto255 is a prime-order group built on Curve25519: every canonical 32-byte encoding
decodes to exactly one element and there are no small-order elements except the identity
(RFC 9496 §1, §4.3.1). That is what ECDH-PSI's DDH argument needs, and it removes the cofactor
pitfalls of raw Curve25519. Decoding rejects non-canonical encodings (RFC 9496 §4.3.1); we reject
the identity separately (it is canonical, but multiplying it by any key yields itself, so a peer
sending it would learn whether our set contains nothing, and it can never be an honest element).

We call libsodium through ``ctypes`` (rbcl's own handle): ``ctypes`` releases the GIL for the
duration of each foreign call, so worker threads scale across cores (see ``psi.group_engine``).
libsodium's ed25519 point validation had a mixed-order bug (CVE-2025-69277, fixed in PyNaCl
1.6.2); ristretto255 decoding never used that code path, and we do not call the ed25519 API.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

import rbcl  # noqa: F401  (importing rbcl runs sodium_init)
from rbcl._sodium import _sodium

from psi.errors import PsiError

__all__ = [
    "ELEMENT_BYTES",
    "IDENTITY",
    "SCALAR_BYTES",
    "Rng",
    "from_uniform_bytes",
    "is_valid_element",
    "random_scalar",
    "scalarmult",
    "scalarmult_base",
]

ELEMENT_BYTES = 32
SCALAR_BYTES = 32
UNIFORM_BYTES = 64
IDENTITY = bytes(ELEMENT_BYTES)

Rng = Callable[[int], bytes]
"""A source of random bytes: ``rng(n) -> n bytes``. ``os.urandom`` unless a test injects one."""


def from_uniform_bytes(uniform: bytes) -> bytes:
    """RFC 9496 §4.3.4 element derivation from 64 uniform bytes (libsodium ``from_hash``)."""
    if len(uniform) != UNIFORM_BYTES:
        raise PsiError(f"element derivation needs {UNIFORM_BYTES} bytes, got {len(uniform)}")
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    _sodium.crypto_core_ristretto255_from_hash(out, uniform)
    return out.raw


def is_valid_element(encoding: bytes) -> bool:
    """True for a canonical encoding of a non-identity element (RFC 9496 §4.3.1 decode)."""
    return (
        len(encoding) == ELEMENT_BYTES
        and encoding != IDENTITY
        and _sodium.crypto_core_ristretto255_is_valid_point(encoding) == 1
    )


def random_scalar(rng: Rng = os.urandom) -> bytes:
    """A uniformly random non-zero scalar mod the group order (64 bytes reduced, RFC 9496 §4.4)."""
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    while True:
        _sodium.crypto_core_ristretto255_scalar_reduce(out, rng(64))
        if out.raw != bytes(SCALAR_BYTES):
            return out.raw


def scalarmult(scalar: bytes, element: bytes) -> bytes:
    """``scalar * element``; raises PsiError for an invalid or identity input/result."""
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    if len(element) != ELEMENT_BYTES or _sodium.crypto_scalarmult_ristretto255(out, scalar, element) != 0:
        raise PsiError("scalar multiplication rejected an invalid or identity element")
    return out.raw


def scalarmult_base(scalar: bytes) -> bytes:
    """``scalar * B`` for the RFC 9496 generator B."""
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    if _sodium.crypto_scalarmult_ristretto255_base(out, scalar) != 0:
        raise PsiError("scalar multiplication of the generator gave the identity")
    return out.raw
