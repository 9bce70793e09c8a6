"""Who holds a privacy-budget reservation, and whether that holder is still alive.

A reservation names the process that made it: host name, process id and the process's start time
(so a recycled pid is not mistaken for the original job). On the owner's own host liveness is
exact; from another host only the reservation's lease (renewed by heartbeats) can tell.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ReservationOwner"]


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may contain spaces: split after its ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@dataclass(frozen=True)
class ReservationOwner:
    """The process holding a reservation: ``host``, ``pid`` and its start time (None if unknown)."""

    host: str
    pid: int
    started: int | None = None

    @classmethod
    def current(cls) -> ReservationOwner:
        pid = os.getpid()
        return cls(host=socket.gethostname(), pid=pid, started=_start_ticks(pid))

    @classmethod
    def parse(cls, text: str | None) -> ReservationOwner | None:
        """Read ``host:pid[:started]`` as stored in the ledger; None for a missing or damaged value."""
        if not text:
            return None
        parts = text.rsplit(":", 2)
        try:
            if len(parts) == 3:
                return cls(parts[0], int(parts[1]), int(parts[2]) if parts[2] else None)
            if len(parts) == 2:
                return cls(parts[0], int(parts[1]))
        except ValueError:
            return None
        return None

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{'' if self.started is None else self.started}"

    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def is_gone(self) -> bool:
        """True when this host can tell the owner process has ended (or its pid was reused)."""
        if not self.is_local():
            return False
        if not _pid_alive(self.pid):
            return True
        return self.started is not None and _start_ticks(self.pid) not in (None, self.started)
