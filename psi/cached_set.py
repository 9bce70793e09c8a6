"""Unbalanced PSI with a cached encrypted set: a large party encrypts its set once per epoch.

For 10^7 members against partners with 10^5, re-blinding the large set every session dominates
(10^7 scalar multiplications). Instead the large party (the *holder*) draws an epoch key k, sends
every partner tag(k·H(y)) once per epoch (8-16 bytes per member, cached by the partner), and per
session only blinds the partner's elements: the partner sends a·H(x), gets k·a·H(x) back, removes
a (a⁻¹ mod ℓ) to obtain k·H(x), and compares tags locally. This is the server-side key reuse of
Kiss et al., "Private Set Intersection for Unequal Set Sizes with Mobile Applications" (PoPETs
2017, §4) and of Chase & Miao's unbalanced setting (CRYPTO 2020).

The trade-off is explicit (``KEY_REUSE_TRADE_OFF``): within one epoch the same k is reused, so a
partner comparing two downloads sees which members joined or left the holder's set, and every
query the holder answers lets the partner test that many candidates against the cached tags
(the federation secret keying the identifiers is what keeps outsiders from doing the same).
Epochs must be short, queries counted per partner and epoch, and the partner-side rules (minimum
set size, runs per day) still apply. Only the partner learns the intersection; the holder learns
the partner's set size.

Everything a party keeps or sends between steps has a byte encoding here (``encode``/``decode``),
so the two sides can run in different processes or organisations and exchange files.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from rbcl._sodium import _sodium

from psi.errors import PsiError, PsiProtocolError
from psi.group_engine import GroupEngine, tag_of
from psi.ristretto255 import ELEMENT_BYTES, SCALAR_BYTES, Rng, random_scalar
from psi.wire import PsiGroup

# Un-blinding needs a scalar inverse mod the group order, which clamped X25519 keys do not offer:
# the cached-set mode stays on ristretto255.
_GROUP = PsiGroup.RISTRETTO255
_FORMAT_VERSION = 1
_MAGIC = b"LOYALFED-PSI-CACHED-SET\n"
MIN_TAG_BYTES, MAX_TAG_BYTES = 8, 32

KEY_REUSE_TRADE_OFF = (
    "one epoch key serves every partner and every query of the epoch: a partner comparing two "
    "downloads of the same epoch sees which members joined or left, and each answered query tests "
    "that many candidates against the cached tags; keep epochs short, rotate keys, count queries"
)

__all__ = [
    "KEY_REUSE_TRADE_OFF",
    "CachedSetHolder",
    "CachedSetMatcher",
    "CachedSetMessage",
    "EpochTags",
    "items_fingerprint",
]


def _encode(kind: str, header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps({"kind": kind, "version": _FORMAT_VERSION, **header}, sort_keys=True).encode()
    return _MAGIC + head + b"\n" + payload


def _decode(data: bytes, kind: str) -> tuple[dict[str, Any], bytes]:
    if not data.startswith(_MAGIC):
        raise PsiProtocolError(f"not a cached-set {kind} (missing header)")
    head, sep, payload = data[len(_MAGIC) :].partition(b"\n")
    try:
        header = json.loads(head) if sep else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("kind") != kind:
        raise PsiProtocolError(f"not a cached-set {kind} (unreadable or different header)")
    if header.get("version") != _FORMAT_VERSION:
        raise PsiProtocolError(f"cached-set {kind}: format version {header.get('version')} unsupported")
    return header, payload


def items_fingerprint(items: Sequence[bytes]) -> str:
    """SHA-256 over the items in order: ties a matcher's saved state to the set it queried."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(len(item).to_bytes(4, "big") + item)
    return digest.hexdigest()


@dataclass(frozen=True)
class EpochTags:
    """What the holder publishes once per epoch: tags of k·H(y), sorted (which also hides order)."""

    epoch: str
    tag_bytes: int
    tags: bytes

    def __post_init__(self) -> None:
        if not MIN_TAG_BYTES <= self.tag_bytes <= MAX_TAG_BYTES:
            raise PsiProtocolError(f"cached epoch tags: tag_bytes must be {MIN_TAG_BYTES}..{MAX_TAG_BYTES}")
        if len(self.tags) % self.tag_bytes:
            raise PsiProtocolError("cached epoch tags: ragged length")

    @property
    def count(self) -> int:
        return len(self.tags) // self.tag_bytes

    @cached_property
    def _sorted(self) -> np.ndarray:
        # Raw fixed-width bytes (void, compared like memcmp; "S" would strip trailing NULs). Sorted
        # once per epoch here, whatever order the file had: a session then costs O(n log N).
        return np.sort(np.frombuffer(self.tags, dtype=np.dtype((np.void, self.tag_bytes))), kind="stable")

    def contains(self, tags: bytes) -> np.ndarray:
        """Boolean mask: which of the concatenated ``tags`` are among the epoch's tags."""
        cache = self._sorted
        wanted = np.frombuffer(tags, dtype=cache.dtype)
        if not len(cache) or not len(wanted):
            return np.zeros(len(wanted), dtype=bool)
        positions = np.minimum(np.searchsorted(cache, wanted), len(cache) - 1)
        return np.asarray(cache[positions] == wanted, dtype=bool)

    def encode(self) -> bytes:
        header = {"epoch": self.epoch, "tag_bytes": self.tag_bytes, "count": self.count, "group": _GROUP}
        return _encode("tags", header, self.tags)

    @classmethod
    def decode(cls, data: bytes) -> EpochTags:
        header, payload = _decode(data, "tags")
        tags = cls(str(header["epoch"]), int(header["tag_bytes"]), payload)
        if tags.count != header.get("count"):
            raise PsiProtocolError("cached epoch tags: count differs from the header (truncated file?)")
        return tags


@dataclass(frozen=True)
class CachedSetMessage:
    """A query (a·H(x)) or an answer (k·a·H(x)): ``count`` elements of one epoch."""

    kind: str  # "query" or "answer"
    epoch: str
    elements: bytes

    @property
    def count(self) -> int:
        return len(self.elements) // ELEMENT_BYTES

    def encode(self) -> bytes:
        return _encode(self.kind, {"epoch": self.epoch, "count": self.count}, self.elements)

    @classmethod
    def decode(cls, data: bytes, kind: str) -> CachedSetMessage:
        header, payload = _decode(data, kind)
        if len(payload) % ELEMENT_BYTES or len(payload) // ELEMENT_BYTES != header.get("count"):
            raise PsiProtocolError(f"cached-set {kind}: element count differs from the header")
        return cls(kind, str(header["epoch"]), payload)


def _check_distinct(items: Sequence[bytes], role: str) -> None:
    if len(set(items)) != len(items):
        raise PsiError(f"{role}: items must be distinct (deduplicate identifiers first)")


def _check_scalar(key: bytes, role: str) -> bytes:
    if len(key) != SCALAR_BYTES or not any(key):
        raise PsiError(f"{role}: a saved key must be {SCALAR_BYTES} non-zero bytes")
    return key


class CachedSetHolder:
    """The large party: one epoch key, its set encrypted once, cheap per-session answers.

    Build with ``CachedSetHolder.encrypt(items, ...)``; ``CachedSetHolder(key, ...)`` resumes an
    epoch from its saved key (answering needs the key only, not the set).
    """

    def __init__(self, key: bytes, *, epoch: str, engine: GroupEngine) -> None:
        self.epoch, self._engine = epoch, engine
        self._key = _check_scalar(key, "holder")

    @classmethod
    def encrypt(
        cls,
        items: Sequence[bytes],
        *,
        epoch: str,
        engine: GroupEngine,
        tag_bytes: int = 12,
        rng: Rng = os.urandom,
    ) -> tuple[CachedSetHolder, EpochTags]:
        """Draw the epoch key and encrypt ``items`` once: the holder and its publishable tags."""
        _check_distinct(items, "holder")
        holder = cls(random_scalar(rng), epoch=epoch, engine=engine)
        blinded = engine.hash_and_blind(items, holder._key, group=_GROUP)
        tags = [
            tag_of(blinded[i : i + ELEMENT_BYTES], tag_bytes) for i in range(0, len(blinded), ELEMENT_BYTES)
        ]
        return holder, EpochTags(epoch, tag_bytes, b"".join(sorted(tags)))

    @property
    def key(self) -> bytes:
        """The epoch key: secret, kept by the holder only, for answering during the epoch."""
        return self._key

    def answer(self, query: CachedSetMessage, *, chunk: int = 0) -> CachedSetMessage:
        """k·e for every element e of a partner's query, in the same order (each one validated)."""
        if query.kind != "query" or query.epoch != self.epoch:
            raise PsiProtocolError(f"cached-set answer: expected a query for epoch {self.epoch!r}")
        blob = self._engine.blind(
            query.elements, self._key, message="CACHED_SET_QUERY", chunk=chunk, group=_GROUP
        )
        return CachedSetMessage("answer", self.epoch, blob)


class CachedSetMatcher:
    """The small party: blinds its items, un-blinds the holder's answer, compares with the cache.

    ``key`` resumes a session whose query was sent earlier (saved with ``key``); by default a
    fresh one is drawn, as every session must (a reused key would link the partner's runs).
    """

    def __init__(
        self,
        items: Sequence[bytes],
        cache: EpochTags,
        *,
        engine: GroupEngine,
        rng: Rng = os.urandom,
        key: bytes | None = None,
    ) -> None:
        _check_distinct(items, "matcher")
        self._items, self._cache, self._engine = items, cache, engine
        self._key = _check_scalar(key, "matcher") if key is not None else random_scalar(rng)
        inverse = ctypes.create_string_buffer(SCALAR_BYTES)
        if _sodium.crypto_core_ristretto255_scalar_invert(inverse, self._key) != 0:
            raise PsiError("scalar inversion failed")
        self._inverse = inverse.raw

    @property
    def key(self) -> bytes:
        """This session's blinding key: secret, saved only to un-blind the answer later."""
        return self._key

    def query(self) -> CachedSetMessage:
        """a·H(x) for our items, in input order (the holder sees only blinded elements)."""
        blob = self._engine.hash_and_blind(self._items, self._key, group=_GROUP)
        return CachedSetMessage("query", self._cache.epoch, blob)

    def matches(self, answer: CachedSetMessage) -> list[int]:
        """Indices of our items whose k·H(x) tag is in the holder's cached epoch tags."""
        if answer.kind != "answer" or answer.epoch != self._cache.epoch:
            raise PsiProtocolError(f"cached-set answer: not an answer for epoch {self._cache.epoch!r}")
        if answer.count != len(self._items):
            raise PsiProtocolError("cached-set answer: element count differs from the query")
        width = self._cache.tag_bytes
        unblinded = self._engine.blind_to_tags(
            answer.elements, self._inverse, width, message="CACHED_SET_ANSWER", chunk=0, group=_GROUP
        )
        return np.flatnonzero(self._cache.contains(unblinded)).tolist()
