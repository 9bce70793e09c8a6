"""A SuperNode's authentication key: ECDSA P-384 in OpenSSH format, as Flower 1.41 reads it.

``flower-supernode --auth-supernode-private-key`` loads an OpenSSH private key and
``flwr supernode register KEY.pub`` an OpenSSH public key on a NIST curve; P-384 is what Flower's
documentation uses. The private key stays on the partner's host; the public key is what the
coordinator registers with its SuperLink.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pki.key_files import write_private_key, write_public_file

__all__ = ["SupernodeKeyFiles", "create_supernode_key", "supernode_public_key"]


@dataclass(frozen=True)
class SupernodeKeyFiles:
    private_key: Path
    public_key: Path


def create_supernode_key(folder: Path, *, stem: str = "supernode") -> SupernodeKeyFiles:
    """``folder/stem`` (private, 0600) and ``folder/stem.pub`` (public, to register)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = supernode_public_key(key)
    return SupernodeKeyFiles(
        write_private_key(folder / stem, private),
        write_public_file(folder / f"{stem}.pub", public + b"\n"),
    )


def supernode_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The OpenSSH one-line public key of ``key``."""
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
