"""The points node's tables (SQLAlchemy Core) and its database engine: SQLite by default, PostgreSQL by URL.

One database holds the ledger, the protocol's state, the outbox and the pending audit events, so a
ledger change, the message that must follow it and its audit event commit in one transaction.

SQLite: WAL, every write transaction ``BEGIN IMMEDIATE`` (it takes the write lock up front, so two
writers never deadlock upgrading a read lock; https://www.sqlite.org/lang_transaction.html), and
``synchronous`` FULL by default (a commit survives power loss) or NORMAL (survives a crashed or
killed process, not power loss; https://www.sqlite.org/pragma.html#pragma_synchronous).
PostgreSQL: READ COMMITTED with row locks (``SELECT … FOR UPDATE``) on the balances and usage
counters a transaction reads before it decides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)

__all__ = ["METADATA", "TABLES", "make_engine", "sqlite_url"]

METADATA = MetaData()

accounts = Table(
    "points_accounts",
    METADATA,
    Column("id", String(200), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("partner", String(64)),
    Column("created_at_us", BigInteger, nullable=False),
)
balances = Table(
    "points_balances",
    METADATA,
    Column("account", String(200), primary_key=True),
    Column("flags", Integer, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
)
transfers = Table(
    "points_transfers",
    METADATA,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("debit_account", String(200), nullable=False),
    Column("credit_account", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    # A pending transfer is resolved (post, void or expire) at most once, enforced by the store
    # (the unique index below).
    Column("pending_id", String(200)),
    Column("expires_at_us", BigInteger),
    Column("at_us", BigInteger, nullable=False),
    Column("code", String(32), nullable=False),
    Column("agreement_id", String(64)),
    Column("link_hash", String(64)),
    Column("limits", Text),
    Column("fields_hash", String(64), nullable=False),
    Index("points_transfers_debit", "debit_account", "seq"),
    Index("points_transfers_credit", "credit_account", "seq"),
    # Partial indexes: only the rows they are searched for. Resolutions (the only rows with a
    # pending_id) and transfers with a timeout (pending ones): every other row skips an index
    # entry, and a conversion writes two fewer at the source, three fewer at the destination.
    # A condition on the column (pending_id = / IN, expires_at_us >= / <=) implies it is not
    # null, so the planner uses them (https://www.sqlite.org/partialindex.html, section 2;
    # PostgreSQL proves the same for strict operators).
    Index(
        "points_transfers_pending",
        "pending_id",
        unique=True,
        sqlite_where=text("pending_id IS NOT NULL"),
        postgresql_where=text("pending_id IS NOT NULL"),
    ),
    Index(
        "points_transfers_open",
        "kind",
        "expires_at_us",
        sqlite_where=text("expires_at_us IS NOT NULL"),
        postgresql_where=text("expires_at_us IS NOT NULL"),
    ),
)
requests = Table(
    "points_requests",
    METADATA,
    Column("id", String(200), primary_key=True),
    Column("fields_hash", String(64), nullable=False),
    Column("result", String(48), nullable=False),
    Column("at_us", BigInteger, nullable=False),
)
usage = Table(
    "points_usage",
    METADATA,
    Column("key", String(240), primary_key=True),
    Column("used", BigInteger, nullable=False),
)
# Member ↔ link token, per agreement and epoch: node-local, never sent anywhere.
links = Table(
    "points_links",
    METADATA,
    Column("agreement_id", String(64), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("token", String(64), primary_key=True),
    Column("member_id", String(200), nullable=False),
    Column("linked_at_us", BigInteger, nullable=False),
    Column("revoked_at_us", BigInteger),
    Index("points_links_member", "member_id", "agreement_id"),
)
# One row per interchange transfer this node takes part in: the protocol's state machine.
interchange = Table(
    "points_interchange",
    METADATA,
    # The source's own transfer id, or "<peer>/<transfer id>" for transfers a peer sends us.
    Column("key", String(200), primary_key=True),
    Column("transfer_id", String(64), nullable=False),
    Column("role", String(12), nullable=False),  # "source" | "destination"
    Column("peer", String(64), nullable=False),
    Column("agreement_id", String(64), nullable=False),
    Column("member_account", String(200), nullable=False),
    Column("link_token", String(64), nullable=False),
    Column("link_hash", String(64), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("credited", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("fields_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64)),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("decided_at_us", BigInteger),
    Index("points_interchange_state", "state", "role", "updated_at_us"),
    Index("points_interchange_decided", "agreement_id", "decided_at_us"),
)
outbox = Table(
    "points_outbox",
    METADATA,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False),
    Column("peer", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("points_outbox_key", "key"),
)
# Points by expiry: a member account's unexpired points, one row per expiry moment (a "lot").
lots = Table(
    "points_lots",
    METADATA,
    Column("account", String(200), primary_key=True),
    Column("expires_at_us", BigInteger, primary_key=True),
    Column("points", BigInteger, nullable=False),
    # The expiry pass's search: the lots still holding points, by expiry. Partial, so a lot used
    # up or expired leaves it, and the pass reads the lots due now, not every lot ever written
    # (one per member and earning day: the table grows with the programme's history).
    Index(
        "points_lots_due",
        "expires_at_us",
        sqlite_where=text("points > 0"),
        postgresql_where=text("points > 0"),
    ),
)
# The lots a reservation holds until it is posted or voided: at the source the points it took
# (restored on a void), at the destination the expiry of the points it will credit.
lot_holds = Table(
    "points_lot_holds",
    METADATA,
    Column("key", String(200), primary_key=True),
    Column("expires_at_us", BigInteger, primary_key=True),
    Column("account", String(200), nullable=False),
    Column("points", BigInteger, nullable=False),
)
audit_outbox = Table(
    "points_audit_outbox",
    METADATA,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("body", Text, nullable=False),
)
statements = Table(
    "points_statements",
    METADATA,
    Column("statement_id", String(200), primary_key=True),
    Column("body", Text, nullable=False),
    Column("peer_body", Text),
    Column("status", String(16), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

TABLES = {
    t.name: t
    for t in (
        accounts,
        balances,
        transfers,
        requests,
        usage,
        links,
        interchange,
        outbox,
        lots,
        lot_holds,
        audit_outbox,
        statements,
    )
}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    """An engine for ``url`` with the tables created; SQLite files are created 0600."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, synchronous)
    engine = create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)
    _create_schema(engine)
    return engine


def _create_schema(engine: Engine) -> None:
    """The tables that do not exist yet, and every index that does not: ``create_all`` skips an
    existing table whole, so a ledger written by an earlier version gains the indexes added since
    (an index of the same name is kept as it is)."""
    METADATA.create_all(engine)
    for table in METADATA.sorted_tables:
        for index in table.indexes:
            index.create(engine, checkfirst=True)


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if not Path(path).exists():
            Path(path).touch(mode=0o600)
            os.chmod(path, 0o600)
    # The pool hands out the connection returned last (LIFO), so the writer keeps one connection
    # and its page cache: a connection that finds the WAL changed by another connection since its
    # last read transaction discards its whole page cache (SQLite's pager.c,
    # pagerBeginReadTransaction -> pager_reset), and the default FIFO pool rotated the node's
    # writes over every pooled connection, each starting cold. Measured on bench/points_bench.py
    # single mode: read syscalls per transfer 20.7 -> 8.0 at the source, 15.4 -> 3.7 at the
    # destination (/proc/<pid>/io syscr). (An in-memory database has one connection per thread.)
    in_file = bool(path) and path != ":memory:"
    pool: dict[str, Any] = {"pool_use_lifo": True} if in_file else {}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get("points_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    _create_schema(engine)
    return engine
