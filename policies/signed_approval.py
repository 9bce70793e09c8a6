"""Signed policy decisions: a data officer's Ed25519 signature over one policy hash for one partner.

A data officer approves or rejects a policy *for their own node* by signing a statement with a key
generated on their own machine; neither the coordinator nor another partner can forge or flip it.

Statement (version 1) = canonical JSON (sorted keys, no whitespace, UTF-8) of::

    {"v": 1, "kind": "loyalfed.policy_decision", "policy_id", "policy_version", "policy_hash",
     "partner_id", "decision": "approved"|"rejected", "signed_at": RFC 3339 UTC, "nonce": 32 hex}

Signature = Ed25519 (RFC 8032 §5.1, pure, no pre-hash) over exactly those bytes, base64.

Verification is deliberately vague: a bad signature, an unknown key, a malformed statement, a
non-canonical encoding or a statement naming another policy hash or partner all fail with the same
``SignatureRejectedError("signed decision is not valid")`` — the failure teaches a forger nothing.

Replay: a statement is valid only for the exact ``policy_hash`` and ``partner_id`` it names
(``verify_for``); the coordinator refuses a nonce it has already stored; a node keeps the newest
decision it has seen per (policy hash, partner) and refuses an older one (``DecisionHistory``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.approval import ApprovalDecision
from policies.errors import PolicyError

__all__ = [
    "STATEMENT_KIND",
    "STATEMENT_VERSION",
    "DecisionHistory",
    "DecisionStatement",
    "ReplayedDecisionError",
    "SignatureRejectedError",
    "SignedDecision",
    "SigningKeyError",
    "generate_signing_key",
    "load_private_key",
    "load_public_key",
    "public_key_b64",
    "public_key_from_b64",
    "sign_decision",
    "write_key_pair",
]

STATEMENT_VERSION = 1
STATEMENT_KIND = "loyalfed.policy_decision"
NONCE_BYTES = 16
_KEYS = frozenset(
    {
        "v",
        "kind",
        "policy_id",
        "policy_version",
        "policy_hash",
        "partner_id",
        "decision",
        "signed_at",
        "nonce",
    }
)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_NONCE_HEX = re.compile(rf"^[0-9a-f]{{{2 * NONCE_BYTES}}}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_RFC3339_UTC = "%Y-%m-%dT%H:%M:%SZ"
_VAGUE = "signed decision is not valid"


class SignatureRejectedError(PolicyError):
    """A signed decision did not verify; the message is the same whatever the cause."""

    def __init__(self) -> None:
        super().__init__(_VAGUE)


class ReplayedDecisionError(PolicyError):
    """A validly signed decision was seen before or is older than the newest one seen."""


class SigningKeyError(PolicyError):
    """A key file or encoded key cannot be read; names the file, never the key material."""


@dataclass(frozen=True)
class DecisionStatement:
    """What a data officer signs: one decision on one policy version's hash for one partner."""

    policy_id: str
    policy_version: int
    policy_hash: str
    partner_id: str
    decision: ApprovalDecision
    signed_at: datetime
    nonce: str

    def __post_init__(self) -> None:
        if not _ID.match(self.policy_id):
            raise ValueError(f"policy_id must match {_ID.pattern}, got {self.policy_id!r}")
        if not _ID.match(self.partner_id):
            raise ValueError(f"partner_id must match {_ID.pattern}, got {self.partner_id!r}")
        if isinstance(self.policy_version, bool) or self.policy_version < 1:
            raise ValueError(f"policy_version must be a positive integer, got {self.policy_version!r}")
        if not _SHA256_HEX.match(self.policy_hash):
            raise ValueError("policy_hash must be 64 lowercase hex digits (sha256)")
        if not _NONCE_HEX.match(self.nonce):
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes as lowercase hex")
        if self.signed_at.utcoffset() != timedelta(0):
            raise ValueError("signed_at must be a UTC datetime")
        if self.signed_at.microsecond:
            raise ValueError("signed_at has whole-second precision (RFC 3339, no fraction)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATEMENT_VERSION,
            "kind": STATEMENT_KIND,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "partner_id": self.partner_id,
            "decision": self.decision.value,
            "signed_at": self.signed_at.strftime(_RFC3339_UTC),
            "nonce": self.nonce,
        }

    def canonical_bytes(self) -> bytes:
        """Sorted keys, no whitespace, UTF-8: the exact bytes the signature covers."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def parse(cls, data: bytes) -> DecisionStatement:
        """Parse canonical statement bytes; ``ValueError`` on anything but an exact v1 statement."""
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict) or set(raw) != _KEYS:
            raise ValueError("statement keys differ from version 1")
        if raw["v"] != STATEMENT_VERSION or raw["kind"] != STATEMENT_KIND:
            raise ValueError("statement is not a version 1 policy decision")
        if not isinstance(raw["policy_version"], int) or not all(
            isinstance(raw[k], str) for k in _KEYS - {"v", "policy_version"}
        ):
            raise ValueError("statement field types differ from version 1")
        statement = cls(
            policy_id=raw["policy_id"],
            policy_version=raw["policy_version"],
            policy_hash=raw["policy_hash"],
            partner_id=raw["partner_id"],
            decision=ApprovalDecision(raw["decision"]),
            signed_at=datetime.strptime(raw["signed_at"], _RFC3339_UTC).replace(tzinfo=UTC),
            nonce=raw["nonce"],
        )
        if statement.canonical_bytes() != data:
            raise ValueError("statement is not in canonical form")
        return statement


@dataclass(frozen=True)
class SignedDecision:
    """A statement's exact bytes (as UTF-8 text) and its base64 Ed25519 signature, as sent on the wire."""

    statement: str
    signature: str

    def to_dict(self) -> dict[str, str]:
        return {"statement": self.statement, "signature": self.signature}

    @classmethod
    def from_dict(cls, data: Any) -> SignedDecision:
        """Build from a wire mapping; a malformed one fails vaguely like a bad signature."""
        if not isinstance(data, dict) or not isinstance(data.get("statement"), str):
            raise SignatureRejectedError()
        if not isinstance(data.get("signature"), str):
            raise SignatureRejectedError()
        return cls(statement=data["statement"], signature=data["signature"])

    def verify(self, public_keys: Iterable[Ed25519PublicKey]) -> DecisionStatement:
        """The statement if one of ``public_keys`` signed exactly these bytes; else a vague refusal."""
        try:
            message = self.statement.encode("utf-8")
            signature = base64.b64decode(self.signature, validate=True)
            statement = DecisionStatement.parse(message)
        except (ValueError, UnicodeError, binascii.Error) as err:
            raise SignatureRejectedError() from err
        for key in public_keys:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            return statement
        raise SignatureRejectedError()

    def verify_for(
        self, public_keys: Iterable[Ed25519PublicKey], *, policy_hash: str, partner_id: str
    ) -> DecisionStatement:
        """Verify, and refuse (vaguely) a statement about any other policy hash or partner."""
        statement = self.verify(public_keys)
        if statement.policy_hash != policy_hash or statement.partner_id != partner_id:
            raise SignatureRejectedError()
        return statement


def sign_decision(
    private_key: Ed25519PrivateKey,
    *,
    policy_id: str,
    policy_version: int,
    policy_hash: str,
    partner_id: str,
    decision: ApprovalDecision,
    now: datetime | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> SignedDecision:
    """Sign one decision; ``now`` and ``random_bytes`` are injectable for reproducible tests."""
    signed_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    statement = DecisionStatement(
        policy_id=policy_id,
        policy_version=policy_version,
        policy_hash=policy_hash,
        partner_id=partner_id,
        decision=ApprovalDecision(decision),
        signed_at=signed_at,
        nonce=random_bytes(NONCE_BYTES).hex(),
    )
    message = statement.canonical_bytes()
    signature = base64.b64encode(private_key.sign(message)).decode("ascii")
    return SignedDecision(statement=message.decode("utf-8"), signature=signature)


@dataclass
class DecisionHistory:
    """A node's memory of decisions: only the newest per (policy hash, partner) is accepted.

    ``accept`` takes an already *verified* statement. It refuses a nonce seen before and a statement
    signed before the newest one accepted for the same (policy hash, partner), so an old approval
    cannot be replayed over a later rejection.
    """

    latest: dict[tuple[str, str], DecisionStatement] = field(default_factory=dict)
    seen_nonces: set[str] = field(default_factory=set)

    def accept(self, statement: DecisionStatement) -> DecisionStatement:
        key = (statement.policy_hash, statement.partner_id)
        newest = self.latest.get(key)
        if newest is not None and statement == newest:
            return statement
        if statement.nonce in self.seen_nonces:
            raise ReplayedDecisionError("this signed decision was already used")
        if newest is not None and statement.signed_at < newest.signed_at:
            raise ReplayedDecisionError("a newer decision on this policy hash exists for this partner")
        self.seen_nonces.add(statement.nonce)
        self.latest[key] = statement
        return statement

    def newest(self, *, policy_hash: str, partner_id: str) -> DecisionStatement | None:
        return self.latest.get((policy_hash, partner_id))


def generate_signing_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key, made on the officer's own machine (it never leaves it)."""
    return Ed25519PrivateKey.generate()


def public_key_b64(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The raw 32-byte public key (RFC 8032 §5.1.5), base64: how it is registered and configured."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error) as err:
        raise SigningKeyError("not a base64 Ed25519 public key (32 raw bytes)") from err


def write_key_pair(key: Ed25519PrivateKey, directory: Path) -> tuple[Path, Path]:
    """Write ``officer.key`` (PKCS#8 PEM, mode 0600, created exclusively) and ``officer.pub`` (base64)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = directory / "officer.key", directory / "officer.pub"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as err:
        raise SigningKeyError(f"{private_path} already exists; refusing to overwrite a signing key") from err
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_text(public_key_b64(key) + "\n", encoding="ascii")
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise SigningKeyError(f"{path}: not a readable PEM Ed25519 private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: the key is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an officer's public key file: base64 raw key (``officer.pub``) or a PEM public key."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SigningKeyError(f"{path}: cannot read the public key file") from err
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as err:
            raise SigningKeyError(f"{path}: not a PEM public key") from err
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{path}: the key is not an Ed25519 key")
        return key
    try:
        return public_key_from_b64(data.decode("ascii"))
    except (SigningKeyError, UnicodeError) as err:
        raise SigningKeyError(f"{path}: not a base64 Ed25519 public key") from err
