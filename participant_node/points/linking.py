"""Member linking for points interchange: ECDH-PSI where both sides learn, and pairwise link tokens.

Two nodes run the Diffie-Hellman PSI of ``psi.protocol`` (fresh keys a and b per session, RFC 9380
hash to ristretto255) over the members who consented to ``loyalty.points_interchange`` naming the
other partner, keeping the *full* doubly blinded element D = a·b·H(x) of each shared member:

1. initiator → responder   a·H(x) for its items, shuffled
2. responder → initiator   b·a·H(x) in the same order, and b·H(y) for its items, shuffled
3. initiator               a·b·H(y); shared members are those with equal D
4. initiator → responder   for each shared member: its position in the responder's order and D;
                           the responder accepts only a D it computed itself in step 2

Each side derives the member's link token as HMAC-SHA256(D, context) with the agreement id, its
epoch and both partner ids as context (RFC 2104): the same value on both sides, unique to the pair
and the agreement's epoch, and useless elsewhere (D depends on this session's secret keys, and
under DDH reveals nothing about the identifier). A node keeps ``member_id ↔ token`` and nothing
else; only tokens cross the wire in transfers, and the audit log sees a hash of a token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from participant_node.points.errors import LinkError
from psi.group_engine import GroupEngine, random_key, split_elements
from psi.permutation import secure_permutation
from psi.ristretto255 import Rng
from psi.wire import PsiGroup

__all__ = ["LinkContext", "LinkInitiator", "LinkResponder", "link_hash", "link_token"]

_TOKEN_CONTEXT = b"loyalfed points link token v1\x00"
_HASH_CONTEXT = b"loyalfed points link hash v1\x00"
_GROUP = PsiGroup.RISTRETTO255


@dataclass(frozen=True)
class LinkContext:
    """What makes tokens pairwise: the agreement, its epoch, the two partners (order-free)."""

    agreement_id: str
    epoch: int
    partners: tuple[str, str]

    def encode(self) -> bytes:
        a, b = sorted(self.partners)
        return f"{self.agreement_id}\x00{self.epoch}\x00{a}\x00{b}".encode()


def link_token(element: bytes, context: LinkContext) -> str:
    """The pairwise link token of a doubly blinded element (hex, 32 bytes)."""
    return hmac.new(element, _TOKEN_CONTEXT + context.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=8_192)  # each side hashes a transfer's token several times (legs, row, events)
def link_hash(token: str) -> str:
    """What the audit log records instead of a token: a one-way hash of it."""
    return hashlib.sha256(_HASH_CONTEXT + token.encode("ascii")).hexdigest()


class LinkInitiator:
    """Steps 1 and 3-4 of a link session, sans I/O."""

    def __init__(
        self, items: Sequence[bytes], context: LinkContext, *, engine: GroupEngine, rng: Rng = os.urandom
    ) -> None:
        if len(set(items)) != len(items):
            raise LinkError("link items must be distinct")
        self._items, self._context, self._engine = items, context, engine
        self._key = random_key(_GROUP, rng)
        self._order = [int(i) for i in secure_permutation(len(items), rng)]

    def blinded(self) -> bytes:
        """Step 1: a·H(x) in shuffled order."""
        return self._engine.hash_and_blind([self._items[i] for i in self._order], self._key, group=_GROUP)

    def finish(
        self, double_own: bytes, peer_blinded: bytes
    ) -> tuple[dict[int, str], list[tuple[int, bytes]]]:
        """Step 3: ``{own item index: token}`` and the reveal for the responder ``[(position, D)]``."""
        own = split_elements(double_own, message="link_double", chunk=0)
        if len(own) != len(self._items):
            raise LinkError(f"peer answered {len(own)} elements for {len(self._items)} sent")
        peer = split_elements(
            self._engine.blind(peer_blinded, self._key, message="link_peer", chunk=0, group=_GROUP),
            message="link_peer",
            chunk=0,
        )
        position_of = {element: k for k, element in enumerate(peer)}
        tokens: dict[int, str] = {}
        reveal: list[tuple[int, bytes]] = []
        for shuffled, element in enumerate(own):
            k = position_of.get(element)
            if k is not None:
                tokens[self._order[shuffled]] = link_token(element, self._context)
                reveal.append((k, element))
        reveal.sort()
        return tokens, reveal


class LinkResponder:
    """Steps 2 and 4 of a link session, sans I/O."""

    def __init__(
        self, items: Sequence[bytes], context: LinkContext, *, engine: GroupEngine, rng: Rng = os.urandom
    ) -> None:
        if len(set(items)) != len(items):
            raise LinkError("link items must be distinct")
        self._items, self._context, self._engine = items, context, engine
        self._key = random_key(_GROUP, rng)
        self._order = [int(i) for i in secure_permutation(len(items), rng)]
        self._answered: set[bytes] = set()

    def answer(self, initiator_blinded: bytes) -> tuple[bytes, bytes]:
        """Step 2: b·a·H(x) in the initiator's order, and b·H(y) for our items, shuffled."""
        double = self._engine.blind(
            initiator_blinded, self._key, message="link_elements", chunk=0, group=_GROUP
        )
        self._answered = set(split_elements(double, message="link_elements", chunk=0))
        own = self._engine.hash_and_blind([self._items[i] for i in self._order], self._key, group=_GROUP)
        return double, own

    def finish(self, reveal: Sequence[tuple[int, bytes]]) -> dict[int, str]:
        """Step 4: ``{own item index: token}``; refuses positions or elements we did not produce."""
        tokens: dict[int, str] = {}
        for position, element in reveal:
            if not 0 <= position < len(self._items) or element not in self._answered:
                raise LinkError("link reveal names an element this node did not compute")
            index = self._order[position]
            if index in tokens:
                raise LinkError("link reveal names a position twice")
            tokens[index] = link_token(element, self._context)
        return tokens
