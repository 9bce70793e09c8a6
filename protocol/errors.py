"""The exception root of `protocol`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["JobSpecError", "MalformedReplyError", "ModelCardError", "ProtocolError"]


class ProtocolError(Exception):
    """Base class of `protocol` errors; the message names the field or key and never quotes member data."""


class JobSpecError(ProtocolError, ValueError):
    """A job specification (from a file, a run config or a message) is invalid; names the field."""


class MalformedReplyError(ProtocolError, ValueError):
    """A node's reply does not have the shape the protocol defines; names the record and key."""


class ModelCardError(ProtocolError, ValueError):
    """A model card cannot be read: missing, not JSON, another version, or an invalid field."""
