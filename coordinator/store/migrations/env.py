"""Alembic environment: migrations run on the connection the caller hands over (``migrate``)."""

from __future__ import annotations

from alembic import context

from coordinator.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the coordinator's migrations through coordinator.store.database.migrate")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
