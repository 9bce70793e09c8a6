"""The Merkle tree of RFC 9162 §2.1 (same hashing as RFC 6962 §2.1): hashes, proofs, verification.

Pure functions over a :class:`SubtreeSource`, which answers "hash of the complete subtree at
(level, index)". A list of leaf hashes (:class:`LeafList`) and the SQLite store both implement it,
so the RFC's recursive definitions of ``PATH`` and ``PROOF`` are written once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "LeafList",
    "SubtreeSource",
    "TreeLevels",
    "consistency_proof",
    "frontier_positions",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_frontier",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: interior node = HASH(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class SubtreeSource(Protocol):
    """Hashes of complete, aligned subtrees: ``(level, index)`` covers leaves
    ``[index * 2**level, (index + 1) * 2**level)``; level 0 are the leaf hashes."""

    def subtree(self, level: int, index: int) -> bytes: ...


@dataclass(frozen=True)
class LeafList:
    """A :class:`SubtreeSource` over an in-memory list of leaf hashes (tests, small trees)."""

    leaves: Sequence[bytes]

    def subtree(self, level: int, index: int) -> bytes:
        start = index << level
        return _perfect_from_leaves(self.leaves[start : start + (1 << level)])


@dataclass(frozen=True)
class TreeLevels:
    """A :class:`SubtreeSource` holding every complete subtree, level by level (``levels[0]`` are
    the leaf hashes, ``levels[k][i]`` covers leaves ``[i * 2**k, (i + 1) * 2**k)``)."""

    levels: Sequence[Sequence[bytes]]

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes]) -> TreeLevels:
        """Hash every complete subtree above ``leaves`` (RFC 9162 §2.1.1 interior nodes)."""
        levels = [list(leaves)]
        while len(levels[-1]) >= 2:
            below = levels[-1]
            levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
        return cls(levels)

    @property
    def size(self) -> int:
        return len(self.levels[0]) if self.levels else 0

    def subtree(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves (``size`` at most :attr:`size`)."""
        return root_from_frontier([self.subtree(level, i) for level, i in frontier_positions(size)])


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the complete subtrees on the right edge of a tree of ``size``, largest first.

    MTH splits at the largest power of two (RFC 9162 §2.1.1), so a tree of ``size`` leaves is the
    right fold of one complete subtree per set bit of ``size``.
    """
    positions, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            positions.append((level, start >> level))
            start += 1 << level
    return positions


def _perfect_from_leaves(leaves: Sequence[bytes]) -> bytes:
    level = list(leaves)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _split(n: int) -> int:
    """RFC 9162 §2.1.1: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """Root of a tree given its complete subtrees from left (largest) to right (smallest).

    MTH splits at the largest power of two, so the root is the right fold of the frontier.
    """
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for left in reversed(frontier[:-1]):
        root = node_hash(left, root)
    return root


def range_hash(source: SubtreeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range the RFC recursion produces (aligned start).

    The range decomposes greedily into complete aligned subtrees, largest first.
    """
    if end <= start:
        return EMPTY_ROOT
    parts: list[bytes] = []
    position = start
    while position < end:
        size = 1 << ((end - position).bit_length() - 1)
        # An aligned start keeps every chunk on the complete-subtree grid.
        while position % size:
            size >>= 1
        parts.append(source.subtree(size.bit_length() - 1, position // size))
        position += size
    return root_from_frontier(parts)


def inclusion_proof(source: SubtreeSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1: PATH(m, D[n]), leaf-to-root order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index must be in [0, {size}), got {index}")
    return _path(source, index, 0, size)


def _path(source: SubtreeSource, m: int, start: int, n: int) -> list[bytes]:
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(source, m, start, k), range_hash(source, start + k, start + n)]
    return [*_path(source, m - k, start + k, n - k), range_hash(source, start, start + k)]


def consistency_proof(source: SubtreeSource, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1: PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"need 0 <= old size <= new size, got {old_size} and {new_size}")
    if old_size in (0, new_size):
        return []
    return _subproof(source, old_size, 0, new_size, complete=True)


def _subproof(source: SubtreeSource, m: int, start: int, n: int, *, complete: bool) -> list[bytes]:
    if m == n:
        return [] if complete else [range_hash(source, start, start + n)]
    k = _split(n)
    if m <= k:
        return [*_subproof(source, m, start, k, complete=complete), range_hash(source, start + k, start + n)]
    return [
        *_subproof(source, m - k, start + k, n - k, complete=False),
        range_hash(source, start, start + k),
    ]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: verify that ``leaf`` (a leaf hash) is entry ``index`` of the tree."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: verify that the tree of ``old_size`` is a prefix of ``new_size``."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    # Step 2: if first is an exact power of two, prepend first_hash (the old root).
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
