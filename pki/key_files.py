"""Private key files: created 0600 before a byte of key is written, never overwritten silently."""

from __future__ import annotations

import os
from pathlib import Path

from pki.errors import PkiError

__all__ = ["write_private_key", "write_public_file"]


def write_private_key(path: Path, key_bytes: bytes, *, overwrite: bool = False) -> Path:
    """Write ``key_bytes`` to ``path`` with mode 0600 (its folder 0700 when we create it)."""
    if path.exists() and not overwrite:
        raise PkiError(f"{path}: a key already exists; refusing to replace it (move it away first)")
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    # O_CREAT with 0600: the file never exists with wider permissions, even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file being replaced may have been readable
        os.write(fd, key_bytes)
    finally:
        os.close(fd)
    return path


def write_public_file(path: Path, data: bytes) -> Path:
    """Certificates, requests and public keys: readable by anyone, safe to send."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
