"""Errors of the node service; every message is safe to show an operator or send to the coordinator."""

from __future__ import annotations

from participant_node.errors import NodeError

__all__ = [
    "CoordinatorDistrustedError",
    "CoordinatorUnavailableError",
    "JobRefusedError",
    "NodeSetupError",
    "ServiceError",
]


class ServiceError(NodeError):
    """Base class of the node service's errors."""


class NodeSetupError(ServiceError):
    """The node cannot start: a missing certificate, an unreadable key file, a bad setting."""


class CoordinatorUnavailableError(ServiceError):
    """The coordinator did not answer (``status`` None), or refused the node's request (its HTTP status)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CoordinatorDistrustedError(ServiceError):
    """The coordinator showed an audit log head inconsistent with the newest one this node saw."""


class JobRefusedError(ServiceError):
    """The node refuses a job step; ``reason`` names the rule, never member data."""

    def __init__(self, partner_id: str, reason: str) -> None:
        super().__init__(f"refused by node {partner_id}: {reason}")
        self.partner_id = partner_id
        self.reason = reason
