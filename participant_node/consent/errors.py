"""Errors of the node's consent store and data-subject-rights handling."""

from __future__ import annotations

from participant_node.errors import NodeError

__all__ = ["ConsentStoreError", "SubjectRequestError"]


class ConsentStoreError(NodeError):
    """The consent store at a partner folder cannot be read or written as asked."""


class SubjectRequestError(NodeError):
    """A data-subject request (access, erasure, withdrawal) cannot be carried out as asked."""
