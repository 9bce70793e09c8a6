"""The SuperLink's TLS certificates: given by the operator, or made once under a local CA.

A federation's operator passes ``--superlink-certs DIR`` holding ``ca.crt``, ``server.pem`` and
``server.key`` signed by the offline federation CA (``loyalfed pki``). Without it, the first start
creates a local CA in ``DIR/local-ca`` and a coordinator certificate for the listening hosts, so one
command runs a federation on a laptop; SuperNodes receive ``ca.crt`` when they register.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from coordinator.superlink_supervisor import SuperLinkCertificates
from pki.certificate_authority import create_federation_ca, sign_request
from pki.certificate_request import CertificateRole, build_request
from pki.key_files import write_private_key, write_public_file

__all__ = ["ensure_superlink_certificates"]

_log = logging.getLogger("loyalfed.coordinator.superlink")


def ensure_superlink_certificates(folder: Path, hosts: Sequence[str]) -> SuperLinkCertificates:
    """The certificates in ``folder``; created under a new local CA when the folder has none."""
    certificates = SuperLinkCertificates(folder)
    if certificates.ca.exists() or certificates.certificate.exists():
        certificates.check()
        return certificates
    ca = create_federation_ca(folder / "local-ca", name="loyalfed local CA")
    key, request = build_request(CertificateRole.COORDINATOR, hosts=list(dict.fromkeys(hosts)))
    pem = sign_request(ca, request.public_bytes(serialization.Encoding.PEM), role=CertificateRole.COORDINATOR)
    write_public_file(certificates.ca, ca.certificate.public_bytes(serialization.Encoding.PEM))
    write_public_file(certificates.certificate, pem)
    write_private_key(
        certificates.key,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    _log.info("created a local CA and the SuperLink certificate in %s", folder)
    return certificates
