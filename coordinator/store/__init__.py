"""The coordinator's store: SQLAlchemy tables and the Alembic migrations applied at start-up."""

from coordinator.store.database import migrate, open_engine, open_store
from coordinator.store.errors import StoreError

__all__ = ["StoreError", "migrate", "open_engine", "open_store"]
