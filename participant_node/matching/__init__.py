"""The node's PSI service: consented input sets, probing guards, HTTP endpoints and client.

A node answers sessions through ``create_matching_app(MatchingService(...))`` and starts them
with ``MatchingService.initiate(MatchingClient(...), peer=...)``; ``node_server_config`` serves it
over mTLS, and the peer's partner id comes from its certificate (``peer_identity``; by default a
node answers nobody without one). ``federation_pki`` issues the CA and node certificates. Only blinded
group elements, truncated tags and Paillier ciphertexts cross the wire; member ids stay in
``MatchingSet``.
"""

from participant_node.matching.client import MatchingClient
from participant_node.matching.config import MATCHING_PURPOSES, MatchingConfig
from participant_node.matching.errors import MatchingError, MatchingRefused, RefusalRule, SessionGone
from participant_node.matching.federation_pki import FederationCertificates, issue_node_certificates
from participant_node.matching.member_set import (
    MatchingSet,
    build_matching_set,
    consented_member_frame,
    gated_matching_set,
    matching_set_from_frames,
)
from participant_node.matching.peer_identity import PeerAuthentication, PeerIdentityRefused
from participant_node.matching.probing_guard import ProbingGuard
from participant_node.matching.run_record import MatchingRunRecord
from participant_node.matching.service import InitiatedRun, MatchingService, create_matching_app
from participant_node.matching.tls_scope import NodeTls, node_server_config

__all__ = [
    "MATCHING_PURPOSES",
    "FederationCertificates",
    "InitiatedRun",
    "MatchingClient",
    "MatchingConfig",
    "MatchingError",
    "MatchingRefused",
    "MatchingRunRecord",
    "MatchingService",
    "MatchingSet",
    "NodeTls",
    "PeerAuthentication",
    "PeerIdentityRefused",
    "ProbingGuard",
    "RefusalRule",
    "SessionGone",
    "build_matching_set",
    "consented_member_frame",
    "create_matching_app",
    "gated_matching_set",
    "issue_node_certificates",
    "matching_set_from_frames",
    "node_server_config",
]
