"""The PostgreSQL fixture really starts a server: the store contract tests depend on it."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def test_database_url_accepts_writes_on_each_backend(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, label TEXT NOT NULL)"))
            conn.execute(text("INSERT INTO probe (id, label) VALUES (1, 'written')"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT label FROM probe WHERE id = 1")).scalar_one() == "written"
            expected = "postgresql" if database_url.startswith("postgresql") else "sqlite"
            assert conn.dialect.name == expected
    finally:
        engine.dispose()
