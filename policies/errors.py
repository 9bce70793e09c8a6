"""The exception root of `policies`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["PolicyError"]


class PolicyError(Exception):
    """Base class for errors raised by `policies`; its message is safe to show to an operator."""
