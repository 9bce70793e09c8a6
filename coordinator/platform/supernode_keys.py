"""A SuperNode's public key as the coordinator accepts it: PEM or OpenSSH, ECDSA on a NIST curve.

Flower's SuperNode authentication signs with ECDSA on a NIST curve; its Control API's
``RegisterNode`` takes the key as PEM (SubjectPublicKeyInfo), and ``flwr supernode register``
reads an OpenSSH public key line. The node may send either encoding.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from coordinator.platform.errors import InvalidRequestError

__all__ = ["SupernodeKeyError", "openssh_public_key", "supernode_public_key"]


class SupernodeKeyError(InvalidRequestError):
    """The SuperNode public key cannot be read or is not an accepted kind of key."""


def supernode_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """A SuperNode public key (PEM or OpenSSH), checked to be ECDSA on a NIST curve."""
    data = text.strip().encode()
    try:
        key = (
            serialization.load_pem_public_key(data)
            if data.startswith(b"-----BEGIN")
            else serialization.load_ssh_public_key(data)
        )
    except (ValueError, TypeError) as err:
        raise SupernodeKeyError("the SuperNode public key is neither PEM nor OpenSSH") from err
    # Flower's SuperNode authentication signs with ECDSA on a NIST curve (flwr.supercore.primitives).
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in {
        "secp256r1",
        "secp384r1",
        "secp521r1",
    }:
        raise SupernodeKeyError("the SuperNode public key must be an EC key on a NIST curve (P-256/384/521)")
    return key


def openssh_public_key(text: str) -> bytes:
    """A SuperNode public key (PEM or OpenSSH) as the OpenSSH line ``flwr supernode register`` reads."""
    return supernode_public_key(text).public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
