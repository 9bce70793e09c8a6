"""Errors of the node's points interchange; messages never name a member."""

from __future__ import annotations

from participant_node.errors import NodeError

__all__ = ["LinkError", "PeerError", "PointsError", "TransferRefused"]


class PointsError(NodeError):
    """Base class of the points ledger and interchange errors."""


class TransferRefused(PointsError):
    """A transfer was refused by a rule; ``code`` is a stable token (recorded, sent to the peer)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class LinkError(PointsError):
    """Members could not be linked, or a link token is unknown or revoked."""


class PeerError(PointsError):
    """The partner's node could not be reached or answered outside the protocol."""
