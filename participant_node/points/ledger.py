"""A node's double-entry points ledger on SQLAlchemy: immutable transfers, balances derived from them.

Accounts: one per member (``member:<id>``, never below zero), one clearing account per partner
(``clearing:<partner>``: points owed to or by that partner), one issuance account (points the
programme created), one fee account, one expiry account. Transfers are insert-only rows; a
correction is a new transfer, never an edit. Each account's balance row is the sum of its
transfers, updated in the transaction that inserts them (as TigerBeetle keeps balances on its
accounts), and ``verify`` recomputes every balance from the transfers and checks the invariants.

``transaction()`` opens one database transaction in which ``LedgerTx.apply`` runs the state
machine of ``ledger_rules`` and the caller may write its own rows (the protocol's outbox, the audit
events): all of it commits, or none of it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select

from participant_node.points.bulk_statements import insert_rows, select_in, update_rows, upsert_add
from participant_node.points.ledger_audit import LedgerCheck, check_ledger
from participant_node.points.ledger_rules import (
    AccountFlags,
    Balance,
    LedgerState,
    Outcome,
    PendingRecord,
    Result,
    Transfer,
    TransferKind,
    UsageLimit,
    apply,
    expire_pending,
)
from participant_node.points.store_schema import TABLES, make_engine

__all__ = [
    "SWEEP_GRACE_US",
    "AccountKind",
    "ExpirySweep",
    "Ledger",
    "LedgerCheck",
    "LedgerTx",
    "account_id",
    "now_us",
    "pending_filter",
]

_T = TABLES


class AccountKind:
    MEMBER = "member"
    CLEARING = "clearing"
    ISSUANCE = "issuance"
    FEE = "fee"
    EXPIRY = "expiry"


def account_id(kind: str, name: str = "") -> str:
    return f"{kind}:{name}" if name else kind


def now_us(moment: datetime | None = None) -> int:
    moment = moment or datetime.now(UTC)
    return int(moment.timestamp() * 1_000_000)


# How far behind its own "now" a finished expiry sweep marks itself done: transactions still open
# when it ran (PostgreSQL runs writers side by side) and small clock corrections stay inside it.
SWEEP_GRACE_US = 60_000_000


@dataclass
class ExpirySweep:
    """Where the expiry sweep may start: every pending transfer whose timeout falls before
    ``done_below_us`` was found resolved or expired by an earlier sweep of this process.

    Resolved pending transfers stay in the (kind, expires_at_us) index for ever (transfers are
    immutable), so a sweep from the beginning probes the whole history of reservations every
    time (measured: 70 ms per pass at 58,000 pending transfers, every 1-2 s, holding the write
    lock). A new process starts at 0 and sweeps the whole history once.
    """

    done_below_us: int = 0

    def finished(self, now_us: int) -> None:
        self.done_below_us = max(self.done_below_us, now_us - SWEEP_GRACE_US)

    def written(self, rows: Sequence[dict[str, Any]]) -> None:
        """A pending transfer written with a timeout before the mark (the clock went back further
        than the grace) sends the next sweep back to the beginning."""
        for row in rows:
            expires = row["expires_at_us"]
            if expires is not None and expires < self.done_below_us and row["kind"] == "pending":
                self.done_below_us = 0
                return


class LedgerTx:
    """One open transaction on the ledger."""

    def __init__(self, conn: Connection, now: int, sweep: ExpirySweep | None = None) -> None:
        self.conn, self.now_us = conn, now
        self._sweep = sweep or ExpirySweep()
        self.swept_at_us: int | None = None  # a complete sweep ran: its mark moves once this commits
        self.events: list[dict[str, Any]] = []  # audit events, written with the transaction (audit_trail)
        self._lock_rows = conn.dialect.name == "postgresql"

    def flush_events(self) -> None:
        insert_rows(self.conn, _T["points_audit_outbox"], self.events)
        self.events = []

    def apply(self, requests: Sequence[Transfer], *, unseen: bool = False) -> list[Outcome]:
        """Run ``requests`` through the state machine and write what succeeded.

        ``unseen``: the caller knows that no request's id was ever submitted (each id is derived
        from a row of its own that did not exist before this transaction), so their earlier
        outcomes are not looked up. Were it wrong, a repeated success would fail on the unique id
        of ``points_transfers`` instead of being answered as a repeat."""
        state = self._load(requests, unseen=unseen)
        outcomes = apply(requests, state)
        self._write(state)
        return outcomes

    def expire_due(self, limit: int = 10_000) -> list[str]:
        """Record the timeout of every pending transfer whose timeout has passed; returns their ids."""
        t = _T["points_transfers"]
        window = (t.c.expires_at_us >= self._sweep.done_below_us, t.c.expires_at_us <= self.now_us)
        due = self.conn.execute(select(t.c.id).where(pending_filter(), *window).limit(limit)).scalars().all()
        if len(due) < limit:  # nothing due is left unresolved once this transaction commits
            self.swept_at_us = self.now_us
        if not due:
            return []
        state = self._load([Transfer(id=f"{i}:expire", kind=TransferKind.VOID, pending_id=i) for i in due])
        for pending_id in due:
            if state.pendings[pending_id].resolved is None:
                expire_pending(state, pending_id)
        self._write(state)
        return list(due)

    def _load(self, requests: Sequence[Transfer], *, unseen: bool = False) -> LedgerState:
        known = {} if unseen else self._known({r.id for r in requests})
        pending_ids = {r.pending_id for r in requests if r.pending_id}
        gives_back = {r.pending_id for r in requests if r.pending_id and r.kind is not TransferKind.POST}
        pendings = self._pendings(pending_ids, gives_back)
        accounts = {a for r in requests for a in (r.debit_account, r.credit_account) if a}
        accounts |= {a for p in pendings.values() for a in (p.debit_account, p.credit_account)}
        return LedgerState(
            balances=self._balances(accounts),
            usage=self._usage(_usage_keys(requests, pendings)),
            pendings=pendings,
            known={k: (h, Result(r)) for k, (h, r) in known.items()},
            now_us=self.now_us,
        )

    def _known(self, ids: set[str]) -> dict[str, tuple[str, str]]:
        """The fields hash and result of each of ``ids`` submitted before."""
        # A success is its own transfer row (with the request's fields hash); refusals are in
        # points_requests. Ledgers written before kept successes there too: those rows win.
        stored = select_in(self.conn, _T["points_transfers"], "id", ids, columns=("id", "fields_hash"))
        known = {row.id: (row.fields_hash, Result.OK.value) for row in stored}
        known.update(
            (row.id, (row.fields_hash, row.result)) for row in self._rows_in(_T["points_requests"], "id", ids)
        )
        return known

    def _rows_in(self, table: Any, column: str, values: Iterable[str]) -> list[Any]:
        return select_in(self.conn, table, column, values)

    def _pendings(self, pending_ids: set[str], gives_back: set[str]) -> dict[str, PendingRecord]:
        """The pending transfers ``pending_ids`` and how each was resolved, if it was. Only those
        in ``gives_back`` (named by a void or an expiry) carry their limits: ``ledger_rules`` reads
        a pending transfer's limits only to give its usage back, which a post never does (caps
        are charged at reservation; a post after the timeout fails and changes nothing), and
        parsing them costs ~7 us per posted transfer."""
        t = _T["points_transfers"]
        # Selected by id alone, the kind checked here: with "AND kind = ?" in the SQL, SQLite's
        # planner (no statistics) searched the (kind, expires_at_us) index, which holds every
        # pending transfer ever made, instead of the unique id index: a scan that grew with the
        # ledger on every batch (https://www.sqlite.org/queryplanner.html, "Choosing between
        # multiple indexes").
        records = {
            row.id: PendingRecord(
                row.debit_account,
                row.credit_account,
                row.amount,
                row.expires_at_us,
                _limits(row.limits) if row.id in gives_back else (),
                code=row.code,
                agreement_id=row.agreement_id,
                link_hash=row.link_hash,
            )
            for row in select_in(self.conn, t, "id", pending_ids)
            if row.kind == TransferKind.PENDING.value
        }
        for row in select_in(self.conn, t, "pending_id", records, columns=("pending_id", "kind")):
            records[row.pending_id].resolved = TransferKind(row.kind)
        return records

    def _balances(self, accounts: set[str]) -> dict[str, Balance]:
        # One lock order for every transaction (by account): no deadlocks between them.
        rows = select_in(
            self.conn, _T["points_balances"], "account", accounts, order_by="account", lock=self._lock_rows
        )
        return {
            row.account: Balance(
                row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted, row.flags
            )
            for row in rows
        }

    def _usage(self, keys: set[str]) -> dict[str, int]:
        if not keys:
            return {}
        u = _T["points_usage"]
        ordered = sorted(keys)
        upsert_add(self.conn, u, ("key", "used"), ("key",), [(k, 0) for k in ordered])
        rows = select_in(self.conn, u, "key", ordered, order_by="key", lock=self._lock_rows)
        return {row.key: row.used for row in rows}

    def _write(self, state: LedgerState) -> None:
        self._sweep.written(state.rows)
        insert_rows(self.conn, _T["points_transfers"], state.rows)
        insert_rows(self.conn, _T["points_requests"], state.requests)
        touched_accounts = state.changed_accounts()
        touched_keys = state.changed_usage_keys()
        update_rows(
            self.conn,
            _T["points_balances"],
            "account",
            [_balance_params(a, state.balances[a]) for a in sorted(touched_accounts)],
        )
        update_rows(
            self.conn,
            _T["points_usage"],
            "key",
            [{"key": k, "used": state.usage[k]} for k in sorted(touched_keys)],
        )
        state.clear_changes()


def _usage_keys(requests: Sequence[Transfer], pendings: dict[str, PendingRecord]) -> set[str]:
    """The usage counters ``requests`` may change: a new transfer's limits, and the limits a void
    or an expiry gives back. A post leaves its pending transfer's usage as it is (``ledger_rules``:
    caps are charged at reservation; a post after the timeout fails, and the expiry sweep gives
    the usage back), so a posted pending transfer's limits are not even loaded (``_pendings``)."""
    keys = {u.key for r in requests for u in r.limits}
    for r in requests:
        pending = pendings.get(r.pending_id) if r.pending_id else None
        if pending is not None and r.kind is not TransferKind.POST:
            keys.update(u.key for u in pending.limits)
    return keys


def _balance_params(account: str, balance: Balance) -> dict[str, Any]:
    return {
        "account": account,
        "debits_pending": balance.debits_pending,
        "debits_posted": balance.debits_posted,
        "credits_pending": balance.credits_pending,
        "credits_posted": balance.credits_posted,
    }


def _limits(raw: str | None) -> tuple[UsageLimit, ...]:
    return tuple(UsageLimit(k, c, a) for k, c, a in json.loads(raw)) if raw else ()


class Ledger:
    """A node's points ledger. Thread-safe; SQLite writers are serialised in-process too."""

    def __init__(
        self, url: str, *, synchronous: str = "FULL", clock: Callable[[], datetime] | None = None
    ) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, synchronous=synchronous)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        self._sweep = ExpirySweep()

    def close(self) -> None:
        self.engine.dispose()

    @property
    def expiry_swept_below_us(self) -> int:
        """Pending transfers whose timeout falls before this were all found resolved or expired:
        the next expiry sweep starts here."""
        return self._sweep.done_below_us

    def now_us(self) -> int:
        return now_us(self._clock())

    @contextmanager
    def transaction(self) -> Iterator[LedgerTx]:
        """One write transaction: everything done through the ``LedgerTx`` commits together."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                tx = LedgerTx(conn, self.now_us(), self._sweep)
                yield tx
                tx.flush_events()
            self._committed(tx)
            return
        with self._write_lock:
            with self.engine.begin() as conn:
                tx = LedgerTx(conn, self.now_us(), self._sweep)
                yield tx
                tx.flush_events()
            self._committed(tx)

    def _committed(self, tx: LedgerTx) -> None:
        if tx.swept_at_us is not None:
            self._sweep.finished(tx.swept_at_us)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(points_read_only=True) as conn, conn.begin():
            yield conn

    def open_accounts(self, accounts: Iterable[tuple[str, str, str | None, AccountFlags]]) -> int:
        """Create ``(id, kind, partner, flags)`` accounts that do not exist yet; returns how many."""
        rows = list(accounts)
        a, b = _T["points_accounts"], _T["points_balances"]
        with self.transaction() as tx:
            existing = {r.id for r in tx._rows_in(a, "id", {r[0] for r in rows})}
            new = [r for r in rows if r[0] not in existing]
            if new:
                tx.conn.execute(
                    a.insert(),
                    [{"id": i, "kind": k, "partner": p, "created_at_us": tx.now_us} for i, k, p, _ in new],
                )
                tx.conn.execute(
                    b.insert(),
                    [
                        {
                            "account": i,
                            "flags": int(f),
                            "debits_pending": 0,
                            "debits_posted": 0,
                            "credits_pending": 0,
                            "credits_posted": 0,
                        }
                        for i, _, _, f in new
                    ],
                )
        return len(new)

    def submit(self, requests: Sequence[Transfer]) -> list[Outcome]:
        with self.transaction() as tx:
            return tx.apply(requests)

    def expire_due(self) -> list[str]:
        with self.transaction() as tx:
            return tx.expire_due()

    def balance(self, account: str) -> Balance | None:
        b = _T["points_balances"]
        with self.reading() as conn:
            row = conn.execute(select(b).where(b.c.account == account)).first()
        if row is None:
            return None
        return Balance(
            row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted, row.flags
        )

    def history(self, account: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest transfers touching ``account``, newest first."""
        t = _T["points_transfers"]
        query = (
            select(t)
            .where(or_(t.c.debit_account == account, t.c.credit_account == account))
            .order_by(t.c.seq.desc())
            .limit(limit)
        )
        with self.reading() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def totals(self, kind: str) -> Balance:
        """Sum of the balances of every account of ``kind`` (e.g. all members)."""
        a, b = _T["points_accounts"], _T["points_balances"]
        query = (
            select(
                func.coalesce(func.sum(b.c.debits_pending), 0),
                func.coalesce(func.sum(b.c.debits_posted), 0),
                func.coalesce(func.sum(b.c.credits_pending), 0),
                func.coalesce(func.sum(b.c.credits_posted), 0),
            )
            .select_from(b.join(a, a.c.id == b.c.account))
            .where(a.c.kind == kind)
        )
        with self.reading() as conn:
            row = conn.execute(query).one()
        return Balance(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def verify(self) -> LedgerCheck:
        """Recompute every balance from the transfers and check the ledger's invariants."""
        with self.reading() as conn:
            return check_ledger(conn)


def pending_filter() -> Any:
    """SQL condition: a pending transfer that no post, void or expiry resolved."""
    t = _T["points_transfers"]
    r = t.alias("r")
    return and_(t.c.kind == "pending", ~select(r.c.id).where(r.c.pending_id == t.c.id).exists())
