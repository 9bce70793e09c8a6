"""The ledger's hot-path statements, sent through the driver with SQL text built once per shape.

SQLAlchemy Core compiles, caches and type-processes every statement in Python: for the narrow rows
and short ``IN (…)`` lists of a transfer batch that costs more than the database's own work (a
Core ``select … where … in_(…)`` is several times the CPU of the same text sent with
``exec_driver_sql``). These functions build the SQL text once per table, columns and list length
(cached) and send it with the driver's ``execute``/``executemany``. Placeholders follow the
driver's DB-API paramstyle (PEP 249): ``?`` for sqlite3, ``%s`` for psycopg. Only names from the
schema (``store_schema``) and constant fragments written here reach the text; every value is a
parameter. The SQL is the common subset of SQLite and PostgreSQL (``ON CONFLICT … DO``).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table

__all__ = ["CHUNK", "delete_in", "insert_rows", "select_in", "update_in", "update_rows", "upsert_add"]

CHUNK = 400  # values per IN (...) list: below SQLite's default host-parameter limit


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _run(conn: Connection, sql: str, params: Any, *, many: bool = False) -> list[tuple[Any, ...]]:
    """Execute on the DB-API cursor of ``conn``'s connection, inside its open transaction (the
    transaction is SQLAlchemy's; only the statement bypasses its per-statement processing)."""
    cursor = conn.connection.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description is not None else []
    finally:
        cursor.close()


@lru_cache(maxsize=256)
def _record(columns: tuple[str, ...]) -> Any:
    """A row type with attribute access by column name, like SQLAlchemy's ``Row``."""
    return namedtuple("Row", columns)  # type: ignore[misc]


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


@lru_cache(maxsize=64)
def _update_sql(table: str, columns: tuple[str, ...], key: str, mark: str) -> str:
    assignments = ", ".join(f"{c} = {mark}" for c in columns)
    return f"UPDATE {table} SET {assignments} WHERE {key} = {mark}"


def _where(column: str, n: int, equal: tuple[str, ...], also: str, mark: str) -> str:
    conditions = [f"{column} IN ({', '.join([mark] * n)})"] + [f"{c} = {mark}" for c in equal]
    return " AND ".join(conditions + ([also] if also else []))


@lru_cache(maxsize=2048)
def _select_sql(
    table: str,
    columns: tuple[str, ...],
    column: str,
    n: int,
    equal: tuple[str, ...],
    also: str,
    order_by: str,
    lock: bool,
    mark: str,
) -> str:
    sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {_where(column, n, equal, also, mark)}"
    return sql + (f" ORDER BY {order_by}" if order_by else "") + (" FOR UPDATE" if lock else "")


@lru_cache(maxsize=2048)
def _delete_sql(table: str, column: str, n: int, equal: tuple[str, ...], mark: str) -> str:
    return f"DELETE FROM {table} WHERE {_where(column, n, equal, '', mark)}"


@lru_cache(maxsize=2048)
def _update_in_sql(table: str, columns: tuple[str, ...], column: str, n: int, mark: str) -> str:
    assignments = ", ".join(f"{c} = {mark}" for c in columns)
    return f"UPDATE {table} SET {assignments} WHERE {_where(column, n, (), '', mark)}"


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    ordered = sorted(set(values))  # one order for every transaction: row locks never deadlock
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def select_in(
    conn: Connection,
    table: Table,
    column: str,
    values: Iterable[Any],
    *,
    columns: Sequence[str] | None = None,
    equal: dict[str, Any] | None = None,
    also: str = "",
    order_by: str = "",
    lock: bool = False,
) -> list[Any]:
    """Rows of ``table`` whose ``column`` is in ``values`` (and each ``equal`` column equals its
    value, and the constant condition ``also`` holds); ``lock`` takes row locks on PostgreSQL."""
    names = tuple(columns) if columns is not None else tuple(table.c.keys())
    equal = equal or {}
    mark, lock = _mark(conn), lock and conn.dialect.name == "postgresql"
    record = _record(names)
    rows: list[Any] = []
    for part in _chunks(values):
        sql = _select_sql(table.name, names, column, len(part), tuple(equal), also, order_by, lock, mark)
        rows += map(record._make, _run(conn, sql, (*part, *equal.values())))
    return rows


def delete_in(
    conn: Connection, table: Table, column: str, values: Iterable[Any], *, equal: dict[str, Any] | None = None
) -> None:
    equal = equal or {}
    for part in _chunks(values):
        sql = _delete_sql(table.name, column, len(part), tuple(equal), _mark(conn))
        _run(conn, sql, (*part, *equal.values()))


def update_in(
    conn: Connection, table: Table, column: str, values: Iterable[Any], changes: dict[str, Any]
) -> None:
    """``UPDATE table SET changes WHERE column IN values``."""
    for part in _chunks(values):
        sql = _update_in_sql(table.name, tuple(changes), column, len(part), _mark(conn))
        _run(conn, sql, (*changes.values(), *part))


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, all of them columns of ``table``)."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql = _insert_sql(table.name, columns, _mark(conn))
    values = itemgetter(*columns)
    _run(conn, sql, [values(row) if len(columns) > 1 else (values(row),) for row in rows], many=True)


@lru_cache(maxsize=64)
def _upsert_sql(table: str, columns: tuple[str, ...], conflict: tuple[str, ...], add: str, mark: str) -> str:
    insert = _insert_sql(table, columns, mark)
    if not add:
        return f"{insert} ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    return (
        f"{insert} ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {add} = {table}.{add} + excluded.{add}"
    )


def upsert_add(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    conflict: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    add: str = "",
) -> None:
    """Insert ``rows`` (values of ``columns``); a row whose ``conflict`` columns match an existing
    row adds its ``add`` column to that row's (or, with no ``add``, leaves the row as it is)."""
    if rows:
        sql = _upsert_sql(table.name, tuple(columns), tuple(conflict), add, _mark(conn))
        _run(conn, sql, list(rows), many=True)


def update_rows(conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """``UPDATE table SET … WHERE key = row[key]`` for each row."""
    if not rows:
        return
    columns = tuple(c for c in rows[0] if c != key)
    sql = _update_sql(table.name, columns, key, _mark(conn))
    values = itemgetter(*columns, key)  # at least two names: always a tuple, in placeholder order
    _run(conn, sql, [values(row) for row in rows], many=True)
