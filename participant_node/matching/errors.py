"""Errors of the node's PSI service; messages never name a member."""

from __future__ import annotations

from enum import StrEnum

from participant_node.errors import NodeError

__all__ = ["MatchingError", "MatchingRefused", "RefusalRule", "SessionGone", "SessionReused"]


class RefusalRule(StrEnum):
    """Which rule refused a run: recorded in the audit log (a token, never the request's content)."""

    UNSPECIFIED = "unspecified"
    PEER_IDENTITY = "peer_identity"
    PEER_NOT_ALLOWED = "peer_not_allowed"
    PURPOSE = "purpose"
    SET_TOO_SMALL = "set_too_small"
    SET_TOO_LARGE = "set_too_large"
    RUNS_PER_DAY = "runs_per_day"
    MOSTLY_NEW_SET = "mostly_new_set"
    NO_VALUES = "no_values"


class MatchingError(NodeError):
    """A matching session could not be set up or continued."""


class MatchingRefused(MatchingError):
    """A guard refused the run (identity, set too small, too many runs, set mostly new…)."""

    def __init__(self, message: str, *, rule: RefusalRule = RefusalRule.UNSPECIFIED) -> None:
        super().__init__(message)
        self.rule = rule


class SessionGone(MatchingError):
    """The session does not exist (any more): unknown id, finished, or timed out."""


class SessionReused(MatchingError):
    """A session id that was used before (closed, aborted or expired): a session never reopens."""
