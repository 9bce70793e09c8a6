"""Semi-honest ECDH-PSI between an initiator and a responder, as sans-I/O state machines.

The Diffie-Hellman PSI of Huberman, Franklin and Hogg ("Enhancing privacy and trust in electronic
communities", EC 1999) and Meadows (IEEE S&P 1986), in the prime-order group ristretto255 or in
curve25519's prime-order subgroup through X25519 (``SessionParams.group``; see ``psi.x25519``),
with an RFC 9380 hash to the curve: with fresh keys a and b, b·a·H(x) = a·b·H(y) iff x = y, and under
DDH the singly blinded elements reveal nothing about non-shared items.

1. initiator → responder  a·H(x) for its items, shuffled                    (INITIATOR_ELEMENTS)
2. responder → initiator  tag(b·a·H(x)), in the same order (intersection)  (INITIATOR_TAGS)
                          or shuffled (cardinality, sum)
   responder → initiator  b·H(y) for its items, shuffled                    (RESPONDER_ELEMENTS)
                          [+ Enc(v_y) under the responder's Paillier key]  (RESPONDER_CIPHERTEXTS)
3. the initiator computes tag(a·b·H(y)) and compares:
   intersection → which of its items are shared; cardinality → how many;
   sum → Σ Enc(v_y) over matches, re-randomised, to the responder          (INTERSECTION_SUM)
   reveal=both → positions of matches in responder order, to the responder (REVEAL)

The classes consume and produce ``Frame`` objects only; ``psi.local_run`` and the node's HTTP
service move the frames. Items must be distinct byte strings (``psi.identifiers`` prepares them).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psi.chunks import ChunkAssembler
from psi.errors import PsiError, PsiProtocolError
from psi.group_engine import GroupEngine, random_key
from psi.paillier import PaillierPrivateKey, PaillierPublicKey
from psi.permutation import secure_permutation
from psi.ristretto255 import ELEMENT_BYTES, Rng
from psi.wire import Frame, MessageKind, PsiMode, Reveal, SessionParams

__all__ = ["Initiator", "PsiResult", "Responder"]

_POSITION = struct.Struct(">I")


@dataclass(frozen=True)
class PsiResult:
    """What one party learned. Indices point into that party's own input items."""

    mode: PsiMode
    initiator_size: int
    responder_size: int
    cardinality: int | None = None
    matched_indices: tuple[int, ...] | None = None
    intersection_sum: int | None = None


def _check_items(items: Sequence[bytes], declared: int, role: str) -> None:
    if len(items) != declared:
        raise PsiError(f"{role}: {len(items)} items but the session declares {declared}")
    if len(set(items)) != len(items):
        raise PsiError(f"{role}: items must be distinct (deduplicate identifiers first)")


def _frames(kind: MessageKind, params: SessionParams, blob: bytes, width: int) -> Iterator[Frame]:
    count = len(blob) // width
    chunks = params.chunks_for(count)
    step = params.chunk_size * width
    for chunk in range(chunks):
        yield Frame(kind, params.session_bytes, chunk, chunks, width, blob[chunk * step : (chunk + 1) * step])


def _split(blob: bytes, width: int) -> list[bytes]:
    return [blob[i : i + width] for i in range(0, len(blob), width)]


class Initiator:
    """The party that starts a session and learns the intersection (or its size)."""

    def __init__(
        self, items: Sequence[bytes], params: SessionParams, *, engine: GroupEngine, rng: Rng = os.urandom
    ) -> None:
        _check_items(items, params.initiator_size, "initiator")
        self.params = params
        self._items = items
        self._engine = engine
        self._rng = rng
        self._key = random_key(params.group, rng)  # fresh per session: a reused key links runs
        self._order = secure_permutation(len(items), rng)
        session, size_a, size_b = params.session_bytes, params.initiator_size, params.responder_size
        cs = params.chunk_size
        self._own_tags = ChunkAssembler(
            MessageKind.INITIATOR_TAGS, session, items=size_a, width=params.tag_bytes, chunk_size=cs
        )
        self._peer_elements = ChunkAssembler(
            MessageKind.RESPONDER_ELEMENTS, session, items=size_b, width=ELEMENT_BYTES, chunk_size=cs
        )
        self._peer_tags: dict[int, bytes] = {}
        self._ciphertexts: ChunkAssembler | None = None
        self._paillier: PaillierPublicKey | None = None
        if params.mode == PsiMode.SUM:
            assert params.paillier_n is not None  # SessionParams enforces it
            self._paillier = PaillierPublicKey(params.paillier_n)
            self._ciphertexts = ChunkAssembler(
                MessageKind.RESPONDER_CIPHERTEXTS,
                session,
                items=size_b,
                width=self._paillier.ciphertext_bytes,
                chunk_size=cs,
            )

    def element_frames(self) -> Iterator[Frame]:
        """Step 1: a·H(x) in shuffled order, one frame per chunk, computed lazily."""
        cs, order, params = self.params.chunk_size, self._order, self.params
        chunks = params.chunks_for(len(self._items))
        for chunk in range(chunks):
            batch = [self._items[i] for i in order[chunk * cs : (chunk + 1) * cs]]
            blob = self._engine.hash_and_blind(batch, self._key, group=params.group)
            yield Frame(
                MessageKind.INITIATOR_ELEMENTS, params.session_bytes, chunk, chunks, ELEMENT_BYTES, blob
            )

    def receive(self, frame: Frame) -> None:
        """Steps 2-3: tags of our elements, the responder's elements and ciphertexts."""
        if frame.kind == MessageKind.INITIATOR_TAGS:
            self._own_tags.add(frame)
        elif frame.kind == MessageKind.RESPONDER_ELEMENTS:
            if self._peer_elements.add(frame):
                self._peer_tags[frame.chunk] = self._engine.blind_to_tags(
                    frame.payload,
                    self._key,
                    self.params.tag_bytes,
                    message=frame.kind.name,
                    chunk=frame.chunk,
                    group=self.params.group,
                )
        elif frame.kind == MessageKind.RESPONDER_CIPHERTEXTS and self._ciphertexts is not None:
            self._ciphertexts.add(frame)
        else:
            raise PsiProtocolError(
                f"initiator cannot accept message {frame.kind.name} in {self.params.mode} mode"
            )

    @property
    def complete(self) -> bool:
        done = self._own_tags.complete and self._peer_elements.complete
        return done and (self._ciphertexts is None or self._ciphertexts.complete)

    def _matches(self) -> tuple[list[bytes], set[bytes], list[bytes]]:
        width = self.params.tag_bytes
        own = _split(self._own_tags.payload(), width)
        peer = _split(b"".join(self._peer_tags[c] for c in range(self._peer_elements.chunks)), width)
        return own, set(own), peer

    def result(self) -> PsiResult:
        """What the initiator learns (call once ``complete``)."""
        own, _own_set, peer = self._matches()
        peer_set = set(peer)
        base: dict[str, Any] = {
            "mode": self.params.mode,
            "initiator_size": self.params.initiator_size,
            "responder_size": self.params.responder_size,
        }
        hits = [j for j, tag in enumerate(own) if tag in peer_set]
        if self.params.mode == PsiMode.INTERSECTION:
            indices = tuple(sorted(int(self._order[j]) for j in hits))
            return PsiResult(**base, cardinality=len(indices), matched_indices=indices)
        return PsiResult(**base, cardinality=len(hits))

    def final_frames(self) -> list[Frame]:
        """Step 3's messages to the responder: the encrypted sum or the revealed positions."""
        _own, own_set, peer = self._matches()
        positions = [k for k, tag in enumerate(peer) if tag in own_set]
        params = self.params
        if params.mode == PsiMode.SUM:
            assert self._paillier is not None and self._ciphertexts is not None
            width = self._paillier.ciphertext_bytes
            ciphertexts = _split(self._ciphertexts.payload(), width)
            chosen = [int.from_bytes(ciphertexts[k], "big") for k in positions]
            for value in chosen:
                self._paillier.check_ciphertext(value)
            total = self._paillier.rerandomize(self._paillier.add_all(chosen), self._rng)
            blob = total.to_bytes(width, "big")
            return [Frame(MessageKind.INTERSECTION_SUM, params.session_bytes, 0, 1, width, blob)]
        if params.mode == PsiMode.INTERSECTION and params.reveal == Reveal.BOTH:
            blob = b"".join(_POSITION.pack(k) for k in positions)
            return list(_frames(MessageKind.REVEAL, params, blob, _POSITION.size))
        return []


class Responder:
    """The party that answers a session; in sum mode it holds the values and the Paillier key."""

    def __init__(
        self,
        items: Sequence[bytes],
        params: SessionParams,
        *,
        engine: GroupEngine,
        rng: Rng = os.urandom,
        values: Sequence[int] | None = None,
        paillier_key: PaillierPrivateKey | None = None,
    ) -> None:
        _check_items(items, params.responder_size, "responder")
        if params.mode == PsiMode.SUM:
            if values is None or paillier_key is None or len(values) != len(items):
                raise PsiError("sum mode: the responder needs one value per item and its Paillier key")
            if paillier_key.public_key.n != params.paillier_n:
                raise PsiError("sum mode: the session's Paillier modulus is not this responder's key")
        self.params = params
        self._items, self._values, self._paillier_key = items, values, paillier_key
        self._engine, self._rng = engine, rng
        self._key = random_key(params.group, rng)
        self._order = secure_permutation(len(items), rng)
        self._incoming = ChunkAssembler(
            MessageKind.INITIATOR_ELEMENTS,
            params.session_bytes,
            items=params.initiator_size,
            width=ELEMENT_BYTES,
            chunk_size=params.chunk_size,
        )
        self._tags: dict[int, bytes] = {}
        self._reveal_parts: dict[int, bytes] = {}
        self._reveal_chunks: int | None = None
        self.intersection_sum: int | None = None

    def element_frames(self) -> Iterator[Frame]:
        """b·H(y) in shuffled order (and Enc(v_y) in the same order in sum mode)."""
        cs, params = self.params.chunk_size, self.params
        chunks = params.chunks_for(len(self._items))
        for chunk in range(chunks):
            picked = self._order[chunk * cs : (chunk + 1) * cs]
            blob = self._engine.hash_and_blind(
                [self._items[i] for i in picked], self._key, group=params.group
            )
            yield Frame(
                MessageKind.RESPONDER_ELEMENTS, params.session_bytes, chunk, chunks, ELEMENT_BYTES, blob
            )
            if params.mode == PsiMode.SUM:
                yield self._ciphertext_frame(picked, chunk, chunks)

    def _ciphertext_frame(self, picked: np.ndarray, chunk: int, chunks: int) -> Frame:
        assert self._paillier_key is not None and self._values is not None
        width = self._paillier_key.public_key.ciphertext_bytes
        encrypted = self._paillier_key.encrypt_many([int(self._values[i]) for i in picked], self._rng)
        blob = b"".join(c.to_bytes(width, "big") for c in encrypted)
        return Frame(MessageKind.RESPONDER_CIPHERTEXTS, self.params.session_bytes, chunk, chunks, width, blob)

    @property
    def answered_all(self) -> bool:
        """True once every chunk of the initiator's elements has been received and answered."""
        return self._incoming.complete

    def receive(self, frame: Frame) -> list[Frame]:
        """Handle one frame from the initiator; return the frames to send back (maybe none)."""
        if frame.kind == MessageKind.INITIATOR_ELEMENTS:
            return self._on_elements(frame)
        if frame.kind == MessageKind.INTERSECTION_SUM and self.params.mode == PsiMode.SUM:
            assert self._paillier_key is not None
            if frame.width != self._paillier_key.public_key.ciphertext_bytes or frame.count != 1:
                raise PsiProtocolError("message INTERSECTION_SUM: expected exactly one ciphertext")
            self.intersection_sum = self._paillier_key.decrypt(int.from_bytes(frame.payload, "big"))
            return []
        if frame.kind == MessageKind.REVEAL and self.params.reveal == Reveal.BOTH:
            if frame.width != _POSITION.size or frame.session != self.params.session_bytes:
                raise PsiProtocolError(f"message REVEAL chunk {frame.chunk}: wrong item width or session")
            if self._reveal_chunks not in (None, frame.chunks):
                raise PsiProtocolError(f"message REVEAL chunk {frame.chunk}: chunk count changed")
            self._reveal_chunks = frame.chunks
            self._reveal_parts[frame.chunk] = frame.payload
            return []
        raise PsiProtocolError(
            f"responder cannot accept message {frame.kind.name} in {self.params.mode} mode"
        )

    def _on_elements(self, frame: Frame) -> list[Frame]:
        fresh = self._incoming.add(frame)
        if fresh:
            self._tags[frame.chunk] = self._engine.blind_to_tags(
                frame.payload,
                self._key,
                self.params.tag_bytes,
                message=frame.kind.name,
                chunk=frame.chunk,
                group=self.params.group,
            )
        params, width = self.params, self.params.tag_bytes
        if params.mode == PsiMode.INTERSECTION:
            # Same order as received: the initiator maps tags back to its own items.
            return [
                Frame(
                    MessageKind.INITIATOR_TAGS,
                    params.session_bytes,
                    frame.chunk,
                    frame.chunks,
                    width,
                    self._tags[frame.chunk],
                )
            ]
        if not self._incoming.complete or not fresh:
            return []
        # Cardinality and sum: shuffle all tags so the initiator cannot tell which matched.
        tags = _split(b"".join(self._tags[c] for c in range(self._incoming.chunks)), width)
        shuffled = b"".join(tags[i] for i in secure_permutation(len(tags), self._rng))
        return list(_frames(MessageKind.INITIATOR_TAGS, params, shuffled, width))

    def result(self) -> PsiResult:
        """What the responder learns: nothing but sizes, the sum, or the revealed intersection."""
        base: dict[str, Any] = {
            "mode": self.params.mode,
            "initiator_size": self.params.initiator_size,
            "responder_size": self.params.responder_size,
        }
        if self.params.mode == PsiMode.SUM:
            return PsiResult(**base, intersection_sum=self.intersection_sum)
        if self.params.mode == PsiMode.INTERSECTION and self.params.reveal == Reveal.BOTH:
            if self._reveal_chunks is None or len(self._reveal_parts) != self._reveal_chunks:
                raise PsiProtocolError("message REVEAL: not all chunks received")
            blob = b"".join(self._reveal_parts[c] for c in range(self._reveal_chunks))
            positions = [_POSITION.unpack_from(blob, i)[0] for i in range(0, len(blob), _POSITION.size)]
            if any(p >= len(self._items) for p in positions):
                raise PsiProtocolError("message REVEAL: position beyond the responder's set")
            indices = tuple(sorted(int(self._order[p]) for p in positions))
            return PsiResult(**base, cardinality=len(indices), matched_indices=indices)
        return PsiResult(**base)
