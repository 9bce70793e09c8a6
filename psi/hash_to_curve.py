"""Hashing byte strings to ristretto255 group elements (RFC 9380 Appendix B, RFC 9496 §4.3.4).

``hash_to_ristretto255(msg, dst)`` is RFC 9380's ``hash_to_ristretto255``: 64 uniform bytes from
``expand_message_xmd`` with SHA-512 (RFC 9380 §5.3.1), mapped to the group with RFC 9496's
one-way map (``ristretto255.from_uniform_bytes``, libsodium's ``crypto_core_ristretto255_from_hash``).
The output is indistinguishable from a random group element, which the ECDH-PSI security
argument (random oracle into a prime-order group, DDH) needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from psi.errors import PsiError
from psi.ristretto255 import from_uniform_bytes

__all__ = ["PSI_DST", "expand_message_xmd", "hash_to_ristretto255", "hash_to_ristretto255_batch"]

# RFC 9380 §3.1: a DST names the protocol, version and suite so two uses never collide.
PSI_DST = b"LOYALFED-PSI-V01-CS01-with-ristretto255_XMD:SHA-512_R255MAP_RO_"

_SHA512_BLOCK = 128  # r_in_bytes for SHA-512 (RFC 9380 §5.3.1)
_SHA512_OUT = 64  # b_in_bytes


def _dst_prime(dst: bytes) -> bytes:
    if len(dst) > 255:
        # RFC 9380 §5.3.3: oversize DSTs are hashed down.
        dst = hashlib.sha512(b"H2C-OVERSIZE-DST-" + dst).digest()
    return dst + bytes([len(dst)])


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 ``expand_message_xmd`` with SHA-512.

    Parameters
    ----------
    msg
        The message to expand.
    dst
        The domain separation tag (RFC 9380 §3.1), at least one byte.
    len_in_bytes
        Output length, 1..65535 and at most 255 SHA-512 blocks.
    """
    ell = -(-len_in_bytes // _SHA512_OUT)
    if not dst or ell > 255 or not 0 < len_in_bytes <= 65535:
        raise PsiError(f"expand_message_xmd: invalid parameters (len_in_bytes={len_in_bytes})")
    dst_prime = _dst_prime(dst)
    b0 = hashlib.sha512(
        bytes(_SHA512_BLOCK) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    ).digest()
    blocks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        chained = bytes(x ^ y for x, y in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha512(chained + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:len_in_bytes]


def hash_to_ristretto255(msg: bytes, dst: bytes = PSI_DST) -> bytes:
    """RFC 9380 Appendix B ``hash_to_ristretto255``: the 32-byte encoding of a group element."""
    return from_uniform_bytes(expand_message_xmd(msg, dst, 64))


def hash_to_ristretto255_batch(items: Sequence[bytes], dst: bytes = PSI_DST) -> list[bytes]:
    """The 64 uniform bytes of ``expand_message_xmd(item, dst, 64)`` for every item.

    The group mapping itself runs in the worker threads of ``psi.group_engine`` (it releases the
    GIL); this is the SHA-512 part, specialised for 64 output bytes (exactly one ``b_1`` block
    after ``b_0``) with the zero-pad prefix absorbed once (RFC 9380 §5.3.1 steps 6-9).
    """
    dst_prime = _dst_prime(dst)
    prefix = hashlib.sha512(bytes(_SHA512_BLOCK))
    tail = (64).to_bytes(2, "big") + b"\x00" + dst_prime
    one = b"\x01" + dst_prime
    sha512 = hashlib.sha512
    out = []
    for msg in items:
        state = prefix.copy()
        state.update(msg + tail)
        out.append(sha512(state.digest() + one).digest())
    return out
