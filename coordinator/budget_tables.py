"""Storage of the privacy-budget ledger: the cap and charge tables and a locking engine.

The cap check and the reservation must be one transaction, so two jobs cannot both see room
under a cap and both take it. On SQLite every ledger transaction starts with ``BEGIN IMMEDIATE``
(the database's write lock is taken before the first read; SQLite "Transactions", §2.2); on
PostgreSQL the reserving transaction locks the partners' cap rows (``coordinator.budget_lock``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Integer, String, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "DEFAULT_CAP_SETTER",
    "BudgetCap",
    "BudgetCharge",
    "create_ledger_engine",
]

# ``set_by`` of a cap row created only to be locked: the ledger's default cap applies to it.
DEFAULT_CAP_SETTER = "(default)"
_SUPPORTED = ("sqlite", "postgresql")
# SQLite waits this long for another process's write lock before failing (seconds).
_SQLITE_BUSY_TIMEOUT_S = 60.0


class _Base(DeclarativeBase):
    pass


class BudgetCap(_Base):
    __tablename__ = "budget_caps"

    partner_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    epsilon_cap: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(128))


class BudgetCharge(_Base):
    """One job's charge on one partner dataset; ``epsilon`` is what counts against the cap."""

    __tablename__ = "budget_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(128), index=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # ChargeStatus
    charged_at: Mapped[str] = mapped_column(String(40))
    epsilon_reserved: Mapped[float | None] = mapped_column(Float, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(300), nullable=True)
    lease_expires_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    settled_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


# Columns added after the first release of the ledger (old files gain them, empty, on open).
_ADDED_COLUMNS = {
    "epsilon_reserved": "FLOAT",
    "owner": "VARCHAR(300)",
    "lease_expires_at": "VARCHAR(40)",
    "settled_by": "VARCHAR(200)",
}


def create_ledger_engine(url: str) -> Engine:
    """An engine whose SQLite transactions begin IMMEDIATE; the tables created or upgraded."""
    if url.split(":", 1)[0].split("+", 1)[0] not in _SUPPORTED:
        raise ValueError(f"budget ledger URL must be SQLite or PostgreSQL, got {url.split(':', 1)[0]!r}")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_manual_transactions)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would issue its own deferred BEGIN; take over so ours can be IMMEDIATE.
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _add_missing_columns(engine: Engine) -> None:
    present = {c["name"] for c in inspect(engine).get_columns(BudgetCharge.__tablename__)}
    missing = [(name, kind) for name, kind in _ADDED_COLUMNS.items() if name not in present]
    if not missing:
        return
    with engine.begin() as connection:
        for name, kind in missing:
            connection.execute(text(f"ALTER TABLE {BudgetCharge.__tablename__} ADD COLUMN {name} {kind}"))
