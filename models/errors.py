"""The exception root of `models`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["ModelError"]


class ModelError(Exception):
    """Base class for errors raised by `models`; its message is safe to show to an operator."""
