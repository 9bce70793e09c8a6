"""Reassembling a chunked message: order-independent, idempotent, size-checked.

Chunks may arrive in any order and may be re-sent after a timeout (resumable transfers): a chunk
seen before with the same bytes is ignored, with different bytes it is a protocol error. Every
chunk must hold exactly the agreed number of items, so a peer cannot send more than announced.
"""

from __future__ import annotations

from psi.errors import PsiProtocolError
from psi.wire import Frame, MessageKind

__all__ = ["ChunkAssembler"]


class ChunkAssembler:
    """Collects the chunks of one message of a known total size."""

    def __init__(self, kind: MessageKind, session: bytes, *, items: int, width: int, chunk_size: int) -> None:
        self.kind = kind
        self.session = session
        self.items = items
        self.width = width
        self.chunk_size = chunk_size
        self.chunks = max(1, -(-items // chunk_size))
        self._parts: dict[int, bytes] = {}

    def expected_count(self, chunk: int) -> int:
        return max(0, min(self.chunk_size, self.items - chunk * self.chunk_size))

    def add(self, frame: Frame) -> bool:
        """Store a chunk; True if it is new, False for an identical re-send."""
        where = f"message {self.kind.name} chunk {frame.chunk}"
        if frame.kind != self.kind or frame.session != self.session:
            raise PsiProtocolError(f"{where}: wrong message kind or session")
        if frame.chunks != self.chunks or frame.width != self.width:
            raise PsiProtocolError(
                f"{where}: expected {self.chunks} chunks of {self.width}-byte items, "
                f"got {frame.chunks} chunks of {frame.width}-byte items"
            )
        if frame.count != self.expected_count(frame.chunk):
            raise PsiProtocolError(
                f"{where}: {frame.count} items, the agreed set size allows {self.expected_count(frame.chunk)}"
            )
        previous = self._parts.get(frame.chunk)
        if previous is not None:
            if previous != frame.payload:
                raise PsiProtocolError(f"{where}: re-sent with different content")
            return False
        self._parts[frame.chunk] = frame.payload
        return True

    @property
    def complete(self) -> bool:
        return len(self._parts) == self.chunks

    def missing(self) -> list[int]:
        return [c for c in range(self.chunks) if c not in self._parts]

    def payload(self) -> bytes:
        if not self.complete:
            raise PsiProtocolError(f"message {self.kind.name}: chunks {self.missing()[:5]} still missing")
        return b"".join(self._parts[c] for c in range(self.chunks))
