"""Errors of the coordinator's policy registry and approval gate."""

from __future__ import annotations

from coordinator.errors import CoordinatorError

__all__ = ["PolicyNotApprovedError", "PolicyNotFoundError", "RegistryError"]


class RegistryError(CoordinatorError):
    """The policy registry cannot be read or written as asked."""


class PolicyNotFoundError(RegistryError):
    """No registered policy matches the reference (id, id@version, hash prefix or file)."""


class PolicyNotApprovedError(CoordinatorError):
    """A job may not start: some involved partner has not approved the current policy hash."""
