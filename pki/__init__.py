"""The federation's public-key infrastructure, with every private key made where it is used.

An organisation generates its keys on its own host (``create_key_and_request``, ``create_supernode_key``)
and sends only a certificate signing request or a public key; the federation CA, kept on an offline
host, signs requests (``sign_request``) and never sees a private key but its own.
"""

from pki.certificate_authority import create_federation_ca, load_ca, sign_request
from pki.certificate_request import CertificateRole, create_key_and_request, describe_certificate
from pki.errors import PkiError
from pki.key_files import write_private_key
from pki.supernode_key import create_supernode_key

__all__ = [
    "CertificateRole",
    "PkiError",
    "create_federation_ca",
    "create_key_and_request",
    "create_supernode_key",
    "describe_certificate",
    "load_ca",
    "sign_request",
    "write_private_key",
]
