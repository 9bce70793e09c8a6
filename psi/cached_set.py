"""Unbalanced PSI with a cached encrypted set: a large party encrypts its set once per epoch.

For 10^7 members against partners with 10^5, re-blinding the large set every session dominates
(10^7 scalar multiplications). Instead the large party (the *holder*) draws an epoch key k, sends
every partner tag(k·H(y)) once per epoch (8-16 bytes per member, cached by the partner), and per
session only blinds the partner's elements: the partner sends a·H(x), gets k·a·H(x) back, removes
a (a⁻¹ mod ℓ) to obtain k·H(x), and compares tags locally. This is the server-side key reuse of
Kiss et al., "Private Set Intersection for Unequal Set Sizes with Mobile Applications" (PoPETs
2017, §4) and of Chase & Miao's unbalanced setting (CRYPTO 2020).

The trade-off is explicit: within one epoch the same k is reused, so a partner comparing two
downloads sees which members joined or left the holder's set; epochs must be short and the
partner-side rules (minimum set size, runs per day) still apply. Only the partner learns the
intersection; the holder learns the partner's set size.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass

from rbcl._sodium import _sodium

from psi.errors import PsiError, PsiProtocolError
from psi.group_engine import GroupEngine, tag_of
from psi.ristretto255 import ELEMENT_BYTES, SCALAR_BYTES, Rng, random_scalar
from psi.wire import PsiGroup

# Un-blinding needs a scalar inverse mod the group order, which clamped X25519 keys do not offer:
# the cached-set mode stays on ristretto255.
_GROUP = PsiGroup.RISTRETTO255

__all__ = ["CachedSetHolder", "CachedSetMatcher", "EpochTags"]


@dataclass(frozen=True)
class EpochTags:
    """What the holder publishes once per epoch: tags of k·H(y), in shuffled-by-sort order."""

    epoch: str
    tag_bytes: int
    tags: bytes

    @property
    def count(self) -> int:
        return len(self.tags) // self.tag_bytes


class CachedSetHolder:
    """The large party: one epoch key, its set encrypted once, cheap per-session answers."""

    def __init__(
        self,
        items: Sequence[bytes],
        *,
        epoch: str,
        engine: GroupEngine,
        tag_bytes: int = 12,
        rng: Rng = os.urandom,
    ) -> None:
        if len(set(items)) != len(items):
            raise PsiError("holder: items must be distinct")
        self.epoch, self._engine = epoch, engine
        self._key = random_scalar(rng)
        blinded = engine.hash_and_blind(items, self._key, group=_GROUP)
        tags = [
            tag_of(blinded[i : i + ELEMENT_BYTES], tag_bytes) for i in range(0, len(blinded), ELEMENT_BYTES)
        ]
        # Sorting hides the input order as well as a shuffle does and lets partners bisect.
        self.published = EpochTags(epoch, tag_bytes, b"".join(sorted(tags)))

    def answer(self, blob: bytes, *, chunk: int = 0) -> bytes:
        """k·e for every element e of a partner's chunk, in the same order (validated)."""
        return self._engine.blind(blob, self._key, message="CACHED_SET_QUERY", chunk=chunk, group=_GROUP)


class CachedSetMatcher:
    """The small party: blinds its items, un-blinds the holder's answers, compares with the cache."""

    def __init__(
        self, items: Sequence[bytes], cache: EpochTags, *, engine: GroupEngine, rng: Rng = os.urandom
    ):
        if len(set(items)) != len(items):
            raise PsiError("matcher: items must be distinct")
        if len(cache.tags) % cache.tag_bytes:
            raise PsiProtocolError("cached epoch tags: ragged length")
        self._items, self._cache, self._engine = items, cache, engine
        self._key = random_scalar(rng)
        inverse = ctypes.create_string_buffer(SCALAR_BYTES)
        if _sodium.crypto_core_ristretto255_scalar_invert(inverse, self._key) != 0:
            raise PsiError("scalar inversion failed")
        self._inverse = inverse.raw

    def query(self) -> bytes:
        """a·H(x) for our items, in input order (the holder sees only blinded elements)."""
        return self._engine.hash_and_blind(self._items, self._key, group=_GROUP)

    def matches(self, answer: bytes) -> list[int]:
        """Indices of our items whose k·H(x) tag is in the holder's cached epoch tags."""
        if len(answer) != len(self._items) * ELEMENT_BYTES:
            raise PsiProtocolError("cached-set answer: element count differs from the query")
        unblinded = self._engine.blind(
            answer, self._inverse, message="CACHED_SET_ANSWER", chunk=0, group=_GROUP
        )
        width, cache = self._cache.tag_bytes, self._cache.tags
        known = {cache[i : i + width] for i in range(0, len(cache), width)}
        return [
            j for j in range(len(self._items)) if tag_of(unblinded[j * 32 : (j + 1) * 32], width) in known
        ]
