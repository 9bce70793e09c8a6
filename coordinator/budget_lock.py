"""The lock a budget reservation holds: the cap check and the reservation are one transaction.

Two jobs must never both see room under a cap and both take it. Every reserver — the budget
ledger (``coordinator.budget_ledger``) and the coordinator service's own budget table
(``coordinator.platform.budgets``) — calls ``lock_cap_rows`` before it reads what is already
reserved, and keeps the lock until it commits its reservation:

- SQLite has one write lock per database: the transaction is begun ``BEGIN IMMEDIATE``, which takes
  that lock before the first read (SQLite "Transactions", §2.2), unless the transaction already
  holds it (pysqlite opens a transaction only for a write, and a write takes the lock).
- PostgreSQL locks the partners' cap rows with ``SELECT … FOR UPDATE`` (PostgreSQL manual,
  "Explicit Locking", row-level locks), after creating a missing cap row with
  ``INSERT … ON CONFLICT DO NOTHING`` so that there is always a row to lock. Rows are locked in
  partner order, so two jobs locking overlapping partners cannot deadlock. Under READ COMMITTED each
  later statement sees every reservation committed before the lock was granted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

__all__ = ["begin_write_lock", "cap_row_insert", "lock_cap_rows"]


def begin_write_lock(session: Session) -> None:
    """On SQLite, make the session's transaction hold the database's write lock (no-op elsewhere)."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi = connection.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def cap_row_insert(dialect: str, table: Any, values: Mapping[str, Any]) -> Insert:
    """``INSERT`` of a cap row that does nothing when the row exists (SQLite or PostgreSQL)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).values(**values).on_conflict_do_nothing()


def lock_cap_rows(
    session: Session,
    table: Any,
    partners: Sequence[str],
    year: int,
    *,
    defaults: Mapping[str, Any],
) -> list[Any]:
    """Lock (creating with ``defaults`` where missing) the cap rows of ``partners`` in ``year``.

    ``table`` is a mapped cap table keyed by ``partner_id`` and ``year`` (either store's).
    Returns the rows in partner order.
    """
    begin_write_lock(session)
    dialect = session.connection().dialect.name
    ordered = sorted(set(partners))
    for partner_id in ordered:
        values = {"partner_id": partner_id, "year": year, **defaults}
        session.execute(cap_row_insert(dialect, table, values))
    query = select(table).where(table.partner_id.in_(ordered), table.year == year)
    return list(session.scalars(query.order_by(table.partner_id).with_for_update()).all())
