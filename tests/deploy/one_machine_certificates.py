"""One machine's test federation: a private CA, a SuperLink certificate and every partner's node certificate.

For tests and local trials on ONE machine only: it makes every partner's private key in one folder,
which a real federation must never do. Separate organisations each run ``loyalfed pki request`` on
their own hosts and send only the request to the CA (docs/deployment_guide.md).

    python tests/deploy/one_machine_certificates.py --out certs [--host coordinator.example.org]
        [--partner careplus@psi.careplus.example --partner freshmart-north ...]

Writes ``ca.crt``/``ca.key`` (keep the key offline), ``server.pem``/``server.key`` for
``flower-superlink --ssl-certfile/--ssl-keyfile/--ssl-ca-certfile``; SuperNodes and the ``flwr``
CLI trust ``ca.crt`` (``--root-certificates``, ``root-certificates`` in the Flower config). The
server certificate names every ``--host`` as a subject alternative name (RFC 6125 §6.4.4).

Each ``--partner ID[@HOST,...]`` also gets ``partners/ID.pem``/``partners/ID.key``: the node's
certificate for node-to-node PSI over mTLS, both as client (it opens sessions) and as server (it
answers them at HOSTs). It names the partner in a SAN URI ``urn:loyalfed:partner:ID``, which is
where a node takes its peer's identity from (``participant_node.matching.peer_identity``).

The certificates are issued by ``participant_node.matching.federation_pki`` (the demo issues its
loopback federation's certificates there too), so run this with the project installed
(``pip install -e .``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from participant_node.matching.federation_pki import PARTNER_URI_PREFIX, generate_certificates, parse_partner

__all__ = ["PARTNER_URI_PREFIX", "generate_certificates", "main", "parse_partner"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the certificates to")
    parser.add_argument("--host", action="append", default=None, help="server name or IP (repeatable)")
    parser.add_argument(
        "--partner",
        action="append",
        default=[],
        help="partner node certificate: ID or ID@HOST[,HOST] (repeatable)",
    )
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    try:
        partners = dict(parse_partner(spec) for spec in args.partner)
    except ValueError as err:
        parser.error(str(err))  # exit 2 with the usage line, not a traceback
    generate_certificates(
        args.out, args.host or ["127.0.0.1", "localhost"], partners=partners, days=args.days
    )
    print(args.out)


if __name__ == "__main__":
    main()
