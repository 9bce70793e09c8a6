"""The PSI wire format: versioned binary frames and the JSON session parameters.

A frame carries one chunk of one message of one session::

    magic "LFPSI" | version u8 | kind u8 | session id 16 bytes | chunk u32 | chunks u32 |
    item width u16 | payload (count × width bytes)

Everything is big-endian. The payload holds fixed-width items only: group elements (32 bytes),
truncated tags, Paillier ciphertexts or u32 positions — never identifiers or unblinded hashes.
The 37-byte header is paid once per chunk (≈ 0.001 byte per element at 32,768 items per chunk).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass, field
from enum import IntEnum, StrEnum

from psi.errors import PsiProtocolError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_GROUP",
    "WIRE_VERSION",
    "Frame",
    "MessageKind",
    "PsiGroup",
    "PsiMode",
    "Reveal",
    "SessionParams",
    "tag_bytes_for",
]

# Version 2: the session parameters name the group (PsiGroup); a v1 peer could not tell.
WIRE_VERSION = 2
MAGIC = b"LFPSI"
_HEADER = struct.Struct(">5sBB16sIIH")
HEADER_BYTES = _HEADER.size
DEFAULT_CHUNK_SIZE = 32_768
DEFAULT_STATISTICAL_SECURITY = 24
MAX_SET_SIZE = 50_000_000


class PsiGroup(StrEnum):
    """The group and hash-to-group suite both parties use; carried in ``SessionParams``."""

    # RFC 9496 ristretto255 with RFC 9380 hash_to_ristretto255 (psi.ristretto255, psi.hash_to_curve)
    RISTRETTO255 = "ristretto255_XMD:SHA-512_R255MAP_RO_"
    # RFC 7748 X25519 blinding of RFC 9380 curve25519_XMD:SHA-512_ELL2_NU_ u-coordinates (psi.x25519)
    X25519 = "curve25519_XMD:SHA-512_ELL2_NU_+X25519"


# X25519 needs ≈ 35% less CPU per PSI element than ristretto255 here (bench/psi_bench.py --group).
DEFAULT_GROUP = PsiGroup.X25519


class PsiMode(StrEnum):
    """What the parties learn."""

    INTERSECTION = "intersection"  # which members are shared
    CARDINALITY = "cardinality"  # only how many
    SUM = "sum"  # the responder learns the sum of its values over the shared members


class Reveal(StrEnum):
    """Who learns the intersection in intersection mode."""

    INITIATOR = "initiator"
    BOTH = "both"


class MessageKind(IntEnum):
    """Wire codes of the frames, in protocol order."""

    INITIATOR_ELEMENTS = 1  # a·H(x), initiator → responder, in the initiator's shuffled order
    INITIATOR_TAGS = 2  # tag(b·a·H(x)), responder → initiator (same order, or shuffled)
    RESPONDER_ELEMENTS = 3  # b·H(y), responder → initiator, shuffled
    RESPONDER_CIPHERTEXTS = 4  # Enc(v_y), aligned with RESPONDER_ELEMENTS (sum mode)
    INTERSECTION_SUM = 5  # Σ Enc(v_y) over matches, re-randomised, initiator → responder
    REVEAL = 6  # positions (u32) of matches in responder order, initiator → responder


def tag_bytes_for(initiator_size: int, responder_size: int, statistical_security: int) -> int:
    """Bytes of a comparison tag: P[any false match] ≤ |X|·|Y| / 2^(8·t) ≤ 2^-σ.

    Truncating the doubly blinded elements is standard (e.g. Kiss et al., "Private Set
    Intersection for Unequal Set Sizes with Mobile Applications", PoPETs 2017, §4).
    """
    pairs = max(1, initiator_size) * max(1, responder_size)
    bits = math.log2(pairs) + statistical_security
    return min(32, max(4, math.ceil(bits / 8)))


@dataclass(frozen=True)
class SessionParams:
    """What both parties agree on before any element moves. Set sizes are public by design."""

    session_id: str
    mode: PsiMode
    initiator_size: int
    responder_size: int
    reveal: Reveal = Reveal.INITIATOR
    chunk_size: int = DEFAULT_CHUNK_SIZE
    statistical_security: int = DEFAULT_STATISTICAL_SECURITY
    paillier_n: int | None = None
    group: PsiGroup = DEFAULT_GROUP
    version: int = WIRE_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version != WIRE_VERSION:
            raise PsiProtocolError(f"unsupported PSI wire version {self.version} (this node: {WIRE_VERSION})")
        if len(bytes.fromhex(self.session_id)) != 16:
            raise PsiProtocolError("session_id must be 16 bytes of hex")
        for name in ("initiator_size", "responder_size"):
            if not 0 <= getattr(self, name) <= MAX_SET_SIZE:
                raise PsiProtocolError(f"{name} must be in [0, {MAX_SET_SIZE}]")
        if not 1 <= self.chunk_size <= 1_048_576:
            raise PsiProtocolError("chunk_size must be in [1, 1048576]")
        if not 16 <= self.statistical_security <= 128:
            raise PsiProtocolError("statistical_security must be in [16, 128] bits")
        if self.group not in tuple(PsiGroup):
            raise PsiProtocolError(f"unknown PSI group {self.group!r}")
        if (self.mode == PsiMode.SUM) != (self.paillier_n is not None):
            raise PsiProtocolError("paillier_n is required in sum mode and only there")

    @property
    def session_bytes(self) -> bytes:
        return bytes.fromhex(self.session_id)

    @property
    def tag_bytes(self) -> int:
        return tag_bytes_for(self.initiator_size, self.responder_size, self.statistical_security)

    def chunks_for(self, count: int) -> int:
        return max(1, -(-count // self.chunk_size))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionParams:
        try:
            raw = json.loads(text)
            raw["mode"], raw["reveal"] = PsiMode(raw["mode"]), Reveal(raw["reveal"])
            raw["group"] = PsiGroup(raw["group"])
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as err:
            raise PsiProtocolError(f"malformed session parameters: {type(err).__name__}") from err


@dataclass(frozen=True)
class Frame:
    """One chunk of one message."""

    kind: MessageKind
    session: bytes
    chunk: int
    chunks: int
    width: int
    payload: bytes

    @property
    def count(self) -> int:
        return len(self.payload) // self.width if self.width else 0

    def encode(self) -> bytes:
        header = _HEADER.pack(
            MAGIC, WIRE_VERSION, self.kind, self.session, self.chunk, self.chunks, self.width
        )
        return header + self.payload

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        if len(data) < HEADER_BYTES:
            raise PsiProtocolError(
                f"frame of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header"
            )
        magic, version, kind, session, chunk, chunks, width = _HEADER.unpack_from(data)
        if magic != MAGIC or version != WIRE_VERSION:
            raise PsiProtocolError(f"not a PSI v{WIRE_VERSION} frame (magic/version mismatch)")
        try:
            kind = MessageKind(kind)
        except ValueError:
            raise PsiProtocolError(f"unknown message kind {kind}") from None
        payload = data[HEADER_BYTES:]
        if width == 0 or len(payload) % width or chunk >= chunks:
            raise PsiProtocolError(
                f"message {kind.name} chunk {chunk}/{chunks}: payload of {len(payload)} bytes "
                f"does not hold whole {width}-byte items"
            )
        return cls(kind, session, chunk, chunks, width, payload)
