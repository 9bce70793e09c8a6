"""The exception root of `participant_node`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["NodeError"]


class NodeError(Exception):
    """Base class for errors raised by `participant_node`; its message is safe to show to an operator."""
