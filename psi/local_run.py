"""Run both parties of a PSI session in one process, over the real wire encoding.

Every frame is encoded to bytes, counted and decoded again on the other side, so this is the
protocol the nodes speak over HTTP minus the network. Used by ``loyalfed psi run``, the demo and
the tests; ``psi.wire_stats`` counts the bytes per direction.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from psi.group_engine import GroupEngine
from psi.paillier import DEFAULT_KEY_BITS, generate_keypair
from psi.protocol import Initiator, PsiResult, Responder
from psi.ristretto255 import Rng
from psi.wire import DEFAULT_CHUNK_SIZE, DEFAULT_GROUP, Frame, PsiGroup, PsiMode, Reveal, SessionParams

__all__ = ["LocalRun", "WireStats", "run_local"]

WireTap = Callable[[str, bytes], None]


@dataclass
class WireStats:
    """Bytes that crossed the wire in each direction."""

    to_responder: int = 0
    to_initiator: int = 0
    frames: int = 0
    taps: list[WireTap] = field(default_factory=list)

    def carry(self, direction: str, frame: Frame) -> Frame:
        data = frame.encode()
        if direction == "to_responder":
            self.to_responder += len(data)
        else:
            self.to_initiator += len(data)
        self.frames += 1
        for tap in self.taps:
            tap(direction, data)
        return Frame.decode(data)


@dataclass(frozen=True)
class LocalRun:
    initiator: PsiResult
    responder: PsiResult
    wire: WireStats


def run_local(
    initiator_items: Sequence[bytes],
    responder_items: Sequence[bytes],
    *,
    mode: PsiMode = PsiMode.INTERSECTION,
    reveal: Reveal = Reveal.INITIATOR,
    responder_values: Sequence[int] | None = None,
    paillier_bits: int = DEFAULT_KEY_BITS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    group: PsiGroup = DEFAULT_GROUP,
    workers: int | None = None,
    rng: Rng = os.urandom,
    tap: WireTap | None = None,
) -> LocalRun:
    """Run one session between two in-process parties and return what each learned.

    Parameters
    ----------
    initiator_items, responder_items
        Distinct byte strings (``psi.identifiers.prepare_identifiers`` output).
    mode, reveal
        What is learned (see ``psi.wire.PsiMode``) and, in intersection mode, by whom.
    group
        The group and hash-to-group suite (``psi.wire.PsiGroup``).
    responder_values
        Sum mode: one non-negative integer per responder item.
    tap
        Called with ``(direction, frame bytes)`` for every frame: the tests' wire capture.
    """
    key = generate_keypair(paillier_bits, rng) if mode == PsiMode.SUM else None
    params = SessionParams(
        session_id=secrets.token_hex(16) if rng is os.urandom else rng(16).hex(),
        mode=mode,
        reveal=reveal,
        initiator_size=len(initiator_items),
        responder_size=len(responder_items),
        chunk_size=chunk_size,
        group=group,
        paillier_n=key.public_key.n if key else None,
    )
    wire = WireStats(taps=[tap] if tap else [])
    with GroupEngine(workers) as engine:
        initiator = Initiator(initiator_items, params, engine=engine, rng=rng)
        responder = Responder(
            responder_items, params, engine=engine, rng=rng, values=responder_values, paillier_key=key
        )
        for frame in responder.element_frames():
            initiator.receive(wire.carry("to_initiator", frame))
        for frame in initiator.element_frames():
            for reply in responder.receive(wire.carry("to_responder", frame)):
                initiator.receive(wire.carry("to_initiator", reply))
        for frame in initiator.final_frames():
            responder.receive(wire.carry("to_responder", frame))
        return LocalRun(initiator.result(), responder.result(), wire)
