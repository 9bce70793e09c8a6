"""Errors of the node's PSI service; messages never name a member."""

from __future__ import annotations

from participant_node.errors import NodeError

__all__ = ["MatchingError", "MatchingRefused", "SessionGone"]


class MatchingError(NodeError):
    """A matching session could not be set up or continued."""


class MatchingRefused(MatchingError):
    """A probing guard refused the run (set too small, too many runs, set mostly new)."""


class SessionGone(MatchingError):
    """The session does not exist (any more): unknown id, finished, or timed out."""
