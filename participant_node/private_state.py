"""Node state on disk is private to the node's operating-system user: folders 0700, files 0600.

The node's state (consent store, tag key, ledgers, accountant files) describes members or unlocks
what does; no other local user may read it (GDPR Art. 32(1)(b), PIPL Art. 51(3): access control
is a required security measure). Modes are set at creation, independent of the process umask;
an existing state file that is looser is tightened (an existing folder is left alone: it may be a
folder the operator chose, such as /tmp).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["DIRECTORY_MODE", "FILE_MODE", "private_directory", "private_file", "write_private_file"]

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: Path) -> Path:
    """Create ``path`` (missing parents with the default mode) as a 0700 folder, if it is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIRECTORY_MODE)
    except FileExistsError:
        return path
    path.chmod(DIRECTORY_MODE)  # mkdir's mode is masked by the umask
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists as a 0600 file (created empty if missing), without truncating it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(descriptor)
    _tighten(path, FILE_MODE)
    return path


def write_private_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new 0600 file ``path`` atomically (a reader sees all of it or nothing)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        path.chmod(current & mode)
