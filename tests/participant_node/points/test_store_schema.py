"""The node's store: a ledger written by an earlier version gains the indexes added since."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from participant_node.points.store_schema import TABLES, make_engine, sqlite_url


def _indexes(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_an_index_missing_from_an_existing_ledger_is_created_when_it_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "points.sqlite"
    make_engine(sqlite_url(path)).dispose()
    declared = {index.name for table in TABLES.values() for index in table.indexes}
    assert declared <= _indexes(path)
    with closing(sqlite3.connect(path)) as conn:  # as an earlier version left it
        conn.execute("DROP INDEX points_lots_due")
        conn.execute("INSERT INTO points_lots VALUES ('member:a', 1, 5)")
        conn.commit()
    make_engine(sqlite_url(path)).dispose()
    assert declared <= _indexes(path)
    with closing(sqlite3.connect(path)) as conn:  # the rows are kept
        assert conn.execute("SELECT account, points FROM points_lots").fetchall() == [("member:a", 5)]
