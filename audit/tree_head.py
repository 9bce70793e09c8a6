"""Signed tree heads: the log's Ed25519 signature over (size, root, time), as in RFC 9162 §4.10.

The signed bytes are a fixed binary layout (not JSON) so that a verifier in any language can
rebuild them: ``b"loyalfed-sth/2" || log_id (32) || tree_size (u64 BE) || timestamp_ms (u64 BE)
|| previous_size (u64 BE) || root_hash (32)``. ``previous_size`` (the size of the head before this
one) chains the heads, so deleting a stored head cannot be hidden by editing its successor.
``log_id`` is SHA-256 of the raw public key (RFC 9162 §4.4 uses a hash of the key too).
Verification failures are deliberately vague (pyca/cryptography style).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from audit.errors import AuditError

__all__ = [
    "TREE_HEAD_HEADER",
    "SignedTreeHead",
    "TreeHeadSigner",
    "load_or_create_signing_key",
    "public_key_from_hex",
    "verify_tree_head",
]

_DOMAIN = b"loyalfed-sth/2"
# HTTP header in which the audit service attaches its latest signed tree head to every response.
TREE_HEAD_HEADER = "X-Audit-Tree-Head"


class SignedTreeHead(BaseModel):
    """What a log commits to at one size; JSON-friendly (hex strings) for the HTTP API."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tree_size: int = Field(ge=0)
    timestamp_ms: int = Field(ge=0)
    previous_size: int = Field(default=0, ge=0)
    root_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    log_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.root_hash)


def _signed_bytes(head: SignedTreeHead | _Unsigned, log_id: bytes) -> bytes:
    sizes = struct.pack(">QQQ", head.tree_size, head.timestamp_ms, head.previous_size)
    return _DOMAIN + log_id + sizes + bytes.fromhex(head.root_hash)


@dataclass(frozen=True)
class _Unsigned:
    tree_size: int
    timestamp_ms: int
    previous_size: int
    root_hash: str


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class TreeHeadSigner:
    """Signs tree heads with an injected Ed25519 key and an injectable clock."""

    def __init__(self, key: Ed25519PrivateKey, *, now: Callable[[], datetime] | None = None) -> None:
        self._key = key
        self._now = now or (lambda: datetime.now(UTC))
        self.public_key = key.public_key()
        self.log_id = hashlib.sha256(_raw_public(self.public_key)).digest()

    @property
    def public_key_hex(self) -> str:
        return _raw_public(self.public_key).hex()

    def sign(self, tree_size: int, root: bytes, *, previous_size: int = 0) -> SignedTreeHead:
        """Sign the tree of ``tree_size`` with ``root``; ``previous_size`` is the prior head's size."""
        unsigned = _Unsigned(tree_size, int(self._now().timestamp() * 1000), previous_size, root.hex())
        signature = self._key.sign(_signed_bytes(unsigned, self.log_id))
        return SignedTreeHead(
            tree_size=tree_size,
            timestamp_ms=unsigned.timestamp_ms,
            previous_size=previous_size,
            root_hash=unsigned.root_hash,
            log_id=self.log_id.hex(),
            signature=signature.hex(),
        )


def public_key_from_hex(value: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))
    except ValueError as err:
        raise AuditError("the log public key is not a 32-byte Ed25519 key in hex") from err


def verify_tree_head(head: SignedTreeHead, public_key: Ed25519PublicKey) -> bool:
    """True when ``head`` was signed by ``public_key``'s log; False otherwise (no detail why)."""
    log_id = hashlib.sha256(_raw_public(public_key)).digest()
    if head.log_id != log_id.hex():
        return False
    message = _signed_bytes(head, log_id)
    try:
        public_key.verify(bytes.fromhex(head.signature), message)
    except InvalidSignature:
        return False
    return True


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the log's PEM key from ``path``, creating it (mode 0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditError(f"{path}: not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a private temporary file, fsync, then link into place: a crash never leaves a
    # half-written key, and two processes racing to create it end up sharing the first one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_signing_key(path)
    finally:
        tmp.unlink()
    return key
