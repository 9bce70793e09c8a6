"""The store's errors; they derive from the coordinator's root and never carry row contents."""

from __future__ import annotations

from coordinator.errors import CoordinatorError

__all__ = ["StoreError"]


class StoreError(CoordinatorError):
    """The store cannot be opened or migrated; names the step, never credentials from the URL."""
