"""The exception root of `audit`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["AuditError"]


class AuditError(Exception):
    """Base class for errors raised by `audit`; its message is safe to show to an operator."""
