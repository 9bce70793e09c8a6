"""The node's own key material, generated on first start in its state folder and never sent anywhere.

* the SuperNode authentication key (``pki.create_supernode_key``: ECDSA P-384, OpenSSH format, as
  ``flower-supernode --auth-supernode-private-key`` reads it); only its public half goes to the
  coordinator, which registers it with the SuperLink;
* the node's TLS key and certificate signing request naming the partner (``pki``, role ``node``):
  the federation CA signs the request (``loyalfed pki sign``) and the operator puts the certificate
  at ``tls/node.pem`` and the CA certificate at ``tls/ca.crt``;
* the loopback secret the node's ClientApp presents to the node service, and the node's PSI key.

Folders are 0700 and key files 0600 from their first byte (``pki.write_private_key``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from participant_node.service.errors import NodeSetupError
from pki import CertificateRole, create_key_and_request, create_supernode_key, write_private_key

__all__ = ["NodeKeys", "check_certificate", "ensure_node_keys", "private_folder"]


def private_folder(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), created if missing."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


@dataclass(frozen=True)
class NodeKeys:
    """Paths of the node's key material inside its state folder."""

    state: Path
    # A TLS key the operator made with ``loyalfed pki request`` instead of the node's own.
    external_tls_key: Path | None = None

    @property
    def supernode_key(self) -> Path:
        return self.state / "keys" / "supernode"

    @property
    def supernode_public_key(self) -> Path:
        return self.state / "keys" / "supernode.pub"

    @property
    def tls_key(self) -> Path:
        return self.external_tls_key or self.state / "tls" / "node.key"

    @property
    def tls_request(self) -> Path:
        return self.state / "tls" / "node.csr"

    @property
    def tls_certificate(self) -> Path:
        return self.state / "tls" / "node.pem"

    @property
    def federation_ca(self) -> Path:
        return self.state / "tls" / "ca.crt"

    @property
    def superlink_ca(self) -> Path:
        return self.state / "tls" / "superlink-ca.crt"

    @property
    def local_secret(self) -> Path:
        return self.state / "keys" / "local.secret"

    @property
    def matching_secret(self) -> Path:
        return self.state / "keys" / "matching.secret"

    def supernode_public_key_pem(self) -> str:
        """The SuperNode public key as PEM (SubjectPublicKeyInfo), as the coordinator API takes it."""
        public = serialization.load_ssh_public_key(self.supernode_public_key.read_bytes())
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def local_secret_value(self) -> str:
        return self.local_secret.read_text(encoding="ascii").strip()


def ensure_node_keys(
    state: Path, *, partner: str, hosts: Sequence[str], tls_key: Path | None = None
) -> NodeKeys:
    """Create whatever key material is missing under ``state``; existing keys are kept as they are.

    With ``tls_key`` (made by the operator with ``loyalfed pki request``) the node makes no TLS key.
    """
    keys = NodeKeys(state, tls_key)
    for folder in (state, state / "keys", state / "tls"):
        private_folder(folder)
    if not keys.supernode_key.exists():
        create_supernode_key(state / "keys", stem="supernode")
    if tls_key is not None and not tls_key.is_file():
        raise NodeSetupError(f"{tls_key}: no such TLS key file")
    if not keys.tls_key.exists():
        create_key_and_request(state / "tls", CertificateRole.NODE, partner=partner, hosts=hosts, stem="node")
    for secret in (keys.local_secret, keys.matching_secret):
        if not secret.exists():
            write_private_key(secret, secrets.token_hex(32).encode("ascii"))
    return keys


def check_certificate(keys: NodeKeys) -> x509.Certificate:
    """The node's signed TLS certificate, or a setup error saying how to get one."""
    if not keys.tls_certificate.exists() or not keys.federation_ca.exists():
        raise NodeSetupError(
            f"no TLS certificate yet: send {keys.tls_request} to the federation CA (loyalfed pki sign) and "
            f"put the certificate at {keys.tls_certificate} and the CA certificate at {keys.federation_ca} "
            "(or pass --tls-certificate and --federation-ca)"
        )
    try:
        certificate = x509.load_pem_x509_certificate(keys.tls_certificate.read_bytes())
        key = serialization.load_pem_private_key(keys.tls_key.read_bytes(), password=None)
    except ValueError as err:
        raise NodeSetupError(f"{keys.tls_certificate}: not a PEM certificate") from err
    if certificate.public_key() != key.public_key():
        raise NodeSetupError(f"{keys.tls_certificate} was not issued for this node's key {keys.tls_key}")
    return certificate
