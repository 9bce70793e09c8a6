"""Open the coordinator's store: an engine for a URL, Alembic migrations to head, sessions.

SQLite file under the state directory by default (DESIGN.md: embedded by default), any SQLAlchemy
URL (PostgreSQL) in production. The schema is only ever changed by the migrations shipped in this
package, applied at start-up, so an older store is upgraded in place and never recreated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from coordinator.store.errors import StoreError

__all__ = ["MIGRATIONS", "migrate", "open_engine", "open_store", "session_factory", "sqlite_url"]

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'coordinator.sqlite'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets API readers run while the job runner writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    try:
        if url.startswith("sqlite"):
            # Checking a connection out never waits (no overflow limit): a local file connection is
            # cheap, and the event loop reads job status from it (coordinator.service.routes.jobs),
            # where a wait for a connection held by a request the loop itself must finish would
            # stall every request.
            database = make_url(url).database
            pooling = {"pool_size": 10, "max_overflow": -1} if database and database != ":memory:" else {}
            engine = create_engine(url, connect_args={"check_same_thread": False}, **pooling)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError, ImportError) as err:
        raise StoreError(f"cannot open the store: {type(err).__name__} for the database URL") from err


def migrate(engine: Engine) -> None:
    """Apply every migration up to head (idempotent; Alembic records the revision in the store)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as err:
        raise StoreError(f"cannot migrate the store: {type(err).__name__}") from err


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def open_store(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """Open and migrate the store at ``url``."""
    engine = open_engine(url)
    migrate(engine)
    return engine, session_factory(engine)
