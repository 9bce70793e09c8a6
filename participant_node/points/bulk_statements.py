"""Bulk inserts and updates through the driver's ``executemany``, for the ledger's hot path.

SQLAlchemy Core's ``executemany`` processes every parameter set in Python (about as much work as
the database's insert itself for a narrow row); the driver's own ``executemany`` with a statement
built once per table does not. Placeholders follow the driver's DB-API paramstyle (PEP 249):
``?`` for sqlite3, ``%s`` for psycopg.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table

__all__ = ["insert_rows", "update_rows"]


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


@lru_cache(maxsize=64)
def _update_sql(table: str, columns: tuple[str, ...], key: str, mark: str) -> str:
    assignments = ", ".join(f"{c} = {mark}" for c in columns)
    return f"UPDATE {table} SET {assignments} WHERE {key} = {mark}"


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, all of them columns of ``table``)."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql = _insert_sql(table.name, columns, _mark(conn))
    conn.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in rows])


def update_rows(conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """``UPDATE table SET … WHERE key = row[key]`` for each row."""
    if not rows:
        return
    columns = tuple(c for c in rows[0] if c != key)
    sql = _update_sql(table.name, columns, key, _mark(conn))
    conn.exec_driver_sql(sql, [(*(row[c] for c in columns), row[key]) for row in rows])
