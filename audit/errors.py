"""The exception root of `audit`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["AuditError", "EventRejectedError", "HistoryRewrittenError", "LogIntegrityError"]


class AuditError(Exception):
    """Base class for errors raised by `audit`; its message is safe to show to an operator."""


class EventRejectedError(AuditError):
    """A lineage record failed validation; the message names fields and rules, never values
    (a refused value may be the very member identifier the check exists to keep out)."""


class LogIntegrityError(AuditError):
    """A log file failed verification; the message names the first bad entry or row."""


class HistoryRewrittenError(AuditError):
    """The audit service showed a tree head that does not extend one it showed before."""
