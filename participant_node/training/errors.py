"""Errors of the node's training side; messages are safe to send to the coordinator."""

from __future__ import annotations

from participant_node.errors import NodeError

__all__ = ["PrivacyBudgetError", "TrainingError"]


class TrainingError(NodeError):
    """A training or evaluation request the node cannot serve."""


class PrivacyBudgetError(TrainingError):
    """Serving the request would spend more privacy budget than the job or the node allows."""
