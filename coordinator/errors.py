"""The exception root of `coordinator`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["CoordinatorError", "SuperLinkError"]


class CoordinatorError(Exception):
    """Base class for errors raised by `coordinator`; its message is safe to show to an operator."""


class SuperLinkError(CoordinatorError):
    """The SuperLink cannot be started, or refused a request of its Control API."""
