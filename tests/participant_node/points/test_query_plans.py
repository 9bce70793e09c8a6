"""The points ledger's per-batch statements search the index of the rows they ask for, on SQLite.

The node never runs ANALYZE, so SQLite's planner has no statistics: it picks an index from the
shape of the WHERE clause alone, and given ``id IN (…) AND kind = ?`` it may search the
(kind, expires_at_us) index, every transfer of that kind ever made, rather than the id index
(https://www.sqlite.org/queryplanner.html, "Choosing between multiple indexes";
https://www.sqlite.org/optoverview.html). Without statistics the choice depends on the statement
alone, the length of its IN list included (that select searched the id index for 1 or 2 ids, the
kind index for 3 or more), not on how many rows the tables hold: a small ledger shows the plans of
a large one, given IN lists longer than a couple of ids.

These tests build a ledger with some history (resolved and restored reservations, links of two
agreements and epochs), run real batches through the functions of the transfer path and the
expiry pass, capture every statement they send to SQLite (the connection's trace callback sees
the driver-level statements of ``bulk_statements`` and SQLAlchemy's alike) and read each one's
plan with EXPLAIN QUERY PLAN (https://www.sqlite.org/eqp.html): no statement scans a ledger
table, and each searches the index of the column its first condition names. Two real nodes (over
mutual TLS on loopback) then show the same of everything a transfer runs at both ends, and of the
periodic passes: the timeouts, the resends, the in-doubt questions, the audit drain, settlement."""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from loyalfed.points_federation import prepare_synthetic_pair
from participant_node.points import link_store, point_lots
from participant_node.points.bulk_statements import delete_in, insert_rows
from participant_node.points.interchange_rows import OUTBOX, ROWS, State, enqueue, load_rows, set_state
from participant_node.points.ledger import AccountKind, Ledger, LedgerTx, account_id
from participant_node.points.ledger_rules import AccountFlags, Transfer, TransferKind, UsageLimit
from participant_node.points.point_lots import Slice
from participant_node.points.service import PointsService
from participant_node.points.source_side import TransferRequest
from participant_node.points.store_schema import TABLES, sqlite_url
from tests.participant_node.points.served_nodes import serving

A, B = "freshmart", "careplus"
ISSUANCE = account_id(AccountKind.ISSUANCE)
CLEARING = account_id(AccountKind.CLEARING, "careplus")
FEES = account_id(AccountKind.FEE)
AGREEMENT = "freshmart-careplus-points"
OTHER_AGREEMENT = "freshmart-homewares-points"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
MEMBERS = 300
HISTORY = 6  # rounds of one reservation per member: 1,800 reservations, half posted, half voided
BATCH = 16  # ids per batch: posts and voids of 8 each, past the lengths the old plans got right

# The index each statement must search: (table, column of its first condition) -> the index's columns.
# ``rowid`` is the table's INTEGER PRIMARY KEY.
EXPECTED_INDEX: dict[tuple[str, str], tuple[str, ...]] = {
    ("points_requests", "id"): ("id",),
    ("points_transfers", "id"): ("id",),
    ("points_transfers", "pending_id"): ("pending_id",),
    ("points_balances", "account"): ("account",),
    ("points_usage", "key"): ("key",),
    ("points_links", "member_id"): ("member_id", "agreement_id"),
    ("points_links", "token"): ("agreement_id", "epoch", "token"),
    ("points_lots", "account"): ("account", "expires_at_us"),
    ("points_lot_holds", "key"): ("key", "expires_at_us"),
    ("points_interchange", "key"): ("key",),
    ("points_outbox", "key"): ("key",),
    ("points_outbox", "seq"): ("rowid",),
    ("points_statements", "statement_id"): ("statement_id",),
    # The periodic passes: the pending transfers whose timeout passed, one side's open
    # reservations (by state and role: the source's are also its reserve messages awaiting an
    # answer, resent oldest first), the transfers an agreement decided in a period.
    ("points_transfers", "kind"): ("kind", "expires_at_us"),
    ("points_interchange", "role"): ("state", "role", "updated_at_us"),
    ("points_interchange", "agreement_id"): ("agreement_id", "decided_at_us"),
}


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def member(n: int) -> str:
    return f"FM-{n:07d}"


def member_account(n: int) -> str:
    return account_id(AccountKind.MEMBER, member(n))


class Clock:
    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Trace:
    """Every statement the ledger's SQLite connections run while ``on`` (values inlined)."""

    on: bool = False
    statements: list[str] = field(default_factory=list)

    def attach(self, engine: Engine) -> None:
        def traced(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.set_trace_callback(self._seen)

        event.listen(engine, "connect", traced)
        engine.dispose()  # the pooled connections predate the listener: open new ones

    def _seen(self, sql: str) -> None:
        if self.on:
            self.statements.append(sql)

    def run(self, work: Any) -> list[str]:
        """The distinct SELECT, UPDATE and DELETE statements ``work()`` sends."""
        self.statements.clear()
        self.on = True
        try:
            work()
        finally:
            self.on = False
        return self.distinct()

    def distinct(self) -> list[str]:
        verbs = ("SELECT", "UPDATE", "DELETE")
        return list(dict.fromkeys(s.strip() for s in self.statements if s.lstrip().upper().startswith(verbs)))


@dataclass
class Store:
    ledger: Ledger
    clock: Clock
    path: Path
    trace: Trace
    round: int = 0


def plan_of(path: Path, sql: str) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]


def index_on(path: Path, table: str, columns: tuple[str, ...]) -> str:
    if columns == ("rowid",):
        return "INTEGER PRIMARY KEY"
    with closing(sqlite3.connect(path)) as conn:
        for _, name, *_ in conn.execute(f"PRAGMA index_list({table})"):
            if tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})")) == columns:
                return str(name)
    raise AssertionError(f"{table} has no index on {columns}")


def reserve(tx: LedgerTx, ids: list[tuple[str, int]], timeout_us: int | None = None) -> None:
    """Pending debits of 10 points from each (transfer id, member number), capped per member and day."""
    day = tx.now_us // 86_400_000_000
    outcomes = tx.apply(
        [
            Transfer(
                i,
                member_account(n),
                CLEARING,
                10,
                kind=TransferKind.PENDING,
                timeout_us=timeout_us,
                agreement_id=AGREEMENT,
                limits=(UsageLimit(f"{AGREEMENT}:{member(n)}:d{day}", 10_000, 10),),
            )
            for i, n in ids
        ]
    )
    assert all(o.ok for o in outcomes), [o.result for o in outcomes if not o.ok]


def resolve(tx: LedgerTx, ids: list[str], kind: TransferKind) -> None:
    outcomes = tx.apply([Transfer(f"{i}:{kind}", kind=kind, pending_id=i) for i in ids])
    assert all(o.ok for o in outcomes), [o.result for o in outcomes if not o.ok]


def interchange_row(key: str, n: int, at_us: int) -> dict[str, Any]:
    return {
        "key": key,
        "transfer_id": key,
        "role": "source",
        "peer": "careplus",
        "agreement_id": AGREEMENT,
        "member_account": member_account(n),
        "link_token": f"token-{n}",
        "link_hash": f"hash-{n}",
        "points": 10,
        "credited": 8,
        "fee": 0,
        "fields_hash": key,
        "state": str(State.RESERVED),
        "reason": None,
        "created_at_us": at_us,
        "updated_at_us": at_us,
        "decided_at_us": None,
    }


def history_round(store: Store) -> None:
    """One reservation per member: lots taken and a row (reserved: its own pending reserve
    message); half of them then posted, half voided, as the source side does."""
    r = store.round
    store.round += 1
    ids = [(f"t{r}-{n}", n) for n in range(MEMBERS)]
    keys = [i for i, _ in ids]
    with store.ledger.transaction() as tx:
        reserve(tx, ids, timeout_us=120_000_000)
        point_lots.take(tx, [(i, member_account(n), 10) for i, n in ids])
        insert_rows(tx.conn, ROWS, [interchange_row(i, n, tx.now_us) for i, n in ids])
    posted, voided = keys[::2], keys[1::2]
    with store.ledger.transaction() as tx:
        resolve(tx, posted, TransferKind.POST)
        resolve(tx, voided, TransferKind.VOID)
        point_lots.release(tx.conn, posted)
        point_lots.restore(tx.conn, voided)
        set_state(tx.conn, posted, State.POSTED, tx.now_us, decided_at_us=tx.now_us)
        set_state(tx.conn, voided, State.VOIDED, tx.now_us, decided_at_us=tx.now_us)
    store.clock.at += timedelta(minutes=5)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("plans") / "points.sqlite"
    clock = Clock()
    ledger = Ledger(sqlite_url(path), synchronous="NORMAL", clock=clock)
    flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ledger.open_accounts(
        [
            (ISSUANCE, AccountKind.ISSUANCE, None, AccountFlags.NONE),
            (CLEARING, AccountKind.CLEARING, "careplus", AccountFlags.NONE),
            (FEES, AccountKind.FEE, None, AccountFlags.NONE),
        ]
        + [(member_account(n), AccountKind.MEMBER, None, flags) for n in range(MEMBERS)]
    )
    expiry = us(T0 + timedelta(days=400))
    with ledger.transaction() as tx:
        outcomes = tx.apply(
            [
                Transfer(f"open-{n}", ISSUANCE, member_account(n), 5_000, code="opening")
                for n in range(MEMBERS)
            ]
        )
        assert all(o.ok for o in outcomes)
        for n in range(MEMBERS):
            point_lots.add_lots(tx.conn, member_account(n), [Slice(2_500, expiry), Slice(2_500, expiry + 1)])
        # Two agreements, two epochs of the first: the agreement's links are many, a member's few.
        for agreement, epoch in ((AGREEMENT, 1), (OTHER_AGREEMENT, 1), (AGREEMENT, 2)):
            tokens = {member(n): f"{agreement}-{epoch}-{n}" for n in range(MEMBERS)}
            link_store.replace_links(tx.conn, agreement, epoch, tokens, at_us=tx.now_us)
    store = Store(ledger, clock, path, Trace())
    for _ in range(HISTORY):
        history_round(store)
    store.trace.attach(ledger.engine)
    yield store
    ledger.close()


# The statement's table and the column of its first condition, when that is "= value" or "IN (…)".
_FIRST_CONDITION = re.compile(
    r"""(?: SELECT\b.*?\bFROM | UPDATE | DELETE\s+FROM ) \s+ (\w+) \b .*? \bWHERE\s+
        (?:\w+\.)? "? (\w+) "? \s* (?: IN\s\( | =\s )""",
    re.S | re.X,
)


# The outboxes hold only what waits to be sent (a row goes once its peer or the audit log has it):
# a periodic pass may read them from the head.
QUEUES = ("points_outbox", "points_audit_outbox")


def check_plans(path: Path, statements: list[str], *, queues: bool = False) -> None:
    """No statement scans a ledger table (but the queues, with ``queues``), and each one searches
    the index of the column its first condition names: the IN list of a batch's ids, or the one key
    a single-row statement asks for (the functions put the selective column first; the planner
    does not know it is selective)."""
    assert statements, "nothing was captured"
    with closing(sqlite3.connect(path)) as conn:  # the node never runs ANALYZE: nor does this
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() is None
    problems = []
    for sql in statements:
        plan = plan_of(path, sql)
        scanned = set(TABLES) - set(QUEUES if queues else ())
        scans = [line for line in plan if re.match(rf"SCAN ({'|'.join(scanned)})\b", line)]
        if scans:
            problems.append(f"{sql[:160]}\n    scans: {scans}")
            continue
        driven = _FIRST_CONDITION.match(sql)
        if driven is None:
            continue
        table, column = driven.groups()
        if (table, column) not in EXPECTED_INDEX:
            problems.append(f"{sql[:160]}\n    add ({table!r}, {column!r}) and its index to EXPECTED_INDEX")
            continue
        index = index_on(path, table, EXPECTED_INDEX[(table, column)])
        key = "rowid" if index == "INTEGER PRIMARY KEY" else column
        searches = [
            line
            for line in plan
            if line.startswith(f"SEARCH {table} USING ")
            and f" {index} (" in line
            and re.search(rf"[( ]{key}[=<>]", line)
        ]
        if not searches:
            problems.append(f"{sql[:160]}\n    plan {plan}, not a search of {index} by {key}")
    assert not problems, "\n".join(problems)


def test_a_batch_s_ledger_lookups_search_the_index_of_the_ids_they_ask_for(store: Store) -> None:
    # Reserve a batch (requests, balances, usage by key), then post half and void half of it
    # (the pending transfers by id and their resolutions by pending id).
    r = store.round
    store.round += 1
    ids = [(f"b{r}-{n}", n) for n in range(BATCH)]

    def batch() -> None:
        with store.ledger.transaction() as tx:
            reserve(tx, ids)
        with store.ledger.transaction() as tx:
            resolve(tx, [i for i, _ in ids[::2]], TransferKind.POST)
            resolve(tx, [i for i, _ in ids[1::2]], TransferKind.VOID)

    statements = store.trace.run(batch)
    assert any("FROM points_transfers WHERE id IN" in s for s in statements)
    check_plans(store.path, statements)


def test_a_batch_s_links_are_searched_by_member_or_token_never_by_the_agreement_alone(store: Store) -> None:
    members = [member(n) for n in range(BATCH)]
    found: dict[str, Any] = {}

    def lookups() -> None:
        with store.ledger.transaction() as tx:
            found["tokens"] = link_store.tokens_of(tx.conn, members, AGREEMENT, 2)
            found["members"] = link_store.member_of(tx.conn, list(found["tokens"].values()), AGREEMENT, 2)
            found["one"] = link_store.token_of(tx.conn, members[0], AGREEMENT, 2)
            # A withdrawn member's links are revoked (of the agreement the other tests do not use).
            link_store.revoke_members(tx.conn, members[:1], OTHER_AGREEMENT, at_us=tx.now_us)

    statements = store.trace.run(lookups)
    assert found["tokens"] == {m: f"{AGREEMENT}-2-{n}" for n, m in enumerate(members)}
    assert found["members"] == {t: m for m, t in found["tokens"].items()}
    assert found["one"] == f"{AGREEMENT}-2-0"
    check_plans(store.path, statements)


def test_a_batch_s_lots_rows_and_messages_are_searched_by_their_keys(store: Store) -> None:
    r = store.round
    store.round += 1
    ids = [(f"k{r}-{n}", n) for n in range(BATCH)]
    keys = [i for i, _ in ids]

    def reservation() -> None:
        with store.ledger.transaction() as tx:
            point_lots.take(tx, [(i, member_account(n), 10) for i, n in ids])
            assert set(point_lots.held(tx.conn, keys)) == set(keys)
            insert_rows(tx.conn, ROWS, [interchange_row(i, n, tx.now_us) for i, n in ids])
            enqueue(tx.conn, keys, "careplus", "post", tx.now_us)

    statements = store.trace.run(reservation)
    with store.ledger.reading() as conn:
        seqs = [row.seq for row in conn.execute(OUTBOX.select().where(OUTBOX.c.key.in_(keys[1::2])))]

    def resolution() -> None:
        with store.ledger.transaction() as tx:
            rows = load_rows(tx.conn, keys)
            assert {row.state for row in rows.values()} == {State.RESERVED}
            set_state(tx.conn, keys, State.POSTED, tx.now_us, decided_at_us=tx.now_us)
            point_lots.release(tx.conn, keys[::2])
            point_lots.restore(tx.conn, keys[1::2])
            delete_in(tx.conn, OUTBOX, "key", keys[::2], equal={"action": "post"})
            delete_in(tx.conn, OUTBOX, "seq", seqs)

    statements += store.trace.run(resolution)
    check_plans(store.path, statements)


def test_the_expiry_pass_searches_pending_transfers_by_their_timeout(store: Store) -> None:
    r = store.round
    store.round += 1
    with store.ledger.transaction() as tx:
        reserve(tx, [(f"x{r}-{n}", n) for n in range(BATCH)], timeout_us=60_000_000)
    store.clock.at += timedelta(minutes=2)
    expired: list[str] = []

    def expiry_pass() -> None:
        expired.extend(store.ledger.expire_due())

    statements = store.trace.run(expiry_pass)
    assert sorted(expired) == sorted(f"x{r}-{n}" for n in range(BATCH))
    # Between the mark of the last complete sweep and now: not the whole history of reservations.
    window = (
        "SEARCH points_transfers USING INDEX points_transfers_open"
        " (kind=? AND expires_at_us>? AND expires_at_us<?)"
    )
    assert any(window in plan_of(store.path, s) for s in statements)
    check_plans(store.path, statements)


def test_the_lots_expiry_pass_searches_the_lots_due_by_their_expiry(store: Store) -> None:
    """The lots of points that lapse: found by the partial index of lots still holding points, not
    by reading every lot (one per member and earning day, the whole programme's history)."""
    expiry_account = account_id(AccountKind.EXPIRY)
    store.ledger.open_accounts([(expiry_account, AccountKind.EXPIRY, None, AccountFlags.NONE)])
    due = us(store.clock.at) + 60_000_000
    accounts = [member_account(n) for n in range(5)]
    with store.ledger.transaction() as tx:
        for account in accounts:
            point_lots.add_lots(tx.conn, account, [Slice(7, due)])
    store.clock.at += timedelta(minutes=2)
    expired: list[int] = []

    def lots_expiry_pass() -> None:
        with store.ledger.transaction() as tx:
            expired.append(point_lots.expire_due(tx))

    statements = store.trace.run(lots_expiry_pass)
    assert expired == [7 * len(accounts)]
    search = "SEARCH points_lots USING INDEX points_lots_due (expires_at_us<?)"
    assert any(search in plan_of(store.path, s) for s in statements)
    check_plans(store.path, statements)


# -- two real nodes: the statements of a transfer at both, and of the periodic passes ----------------


@dataclass
class Nodes:
    services: dict[str, PointsService]
    traces: dict[str, Trace]
    paths: dict[str, Path]  # each node's ledger file
    clock: Clock

    def run(self, work: Any) -> dict[str, list[str]]:
        """The distinct SELECT, UPDATE and DELETE statements each node runs while ``work()`` runs."""
        for trace in self.traces.values():
            trace.statements.clear()
            trace.on = True
        try:
            work()
        finally:
            for trace in self.traces.values():
                trace.on = False
        return {p: trace.distinct() for p, trace in self.traces.items()}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    root = tmp_path_factory.mktemp("plan-nodes")
    pair = prepare_synthetic_pair(root, members=160, shared=120, min_link_set_size=20)
    clock = Clock(datetime.now(UTC))
    services = {p: PointsService(pair.settings[p], clock=clock) for p in (A, B)}
    with serving(pair, services, start=False):
        assert services[A].link(B).linked == 120
        traces = {p: Trace() for p in services}
        for partner, service in services.items():
            traces[partner].attach(service.ledger.engine)
        paths = {p: Path(s.ledger.url.removeprefix("sqlite:///")) for p, s in services.items()}
        yield Nodes(services, traces, paths, clock)
        for service in services.values():
            service.stop_sending()


def requests_of(tag: str) -> list[TransferRequest]:
    """One 250-point transfer from each of BATCH members both partners know (FreshMart's 40-159),
    with minted ids (a uuid's hex, as a node mints them)."""
    return [
        TransferRequest(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{n}").hex, member(40 + n), B, 250)
        for n in range(BATCH)
    ]


def check_node_plans(nodes: Nodes, statements: dict[str, list[str]], *, queues: bool = False) -> None:
    for partner, sql in statements.items():
        check_plans(nodes.paths[partner], sql, queues=queues)


def test_a_transfer_s_statements_at_both_nodes_search_the_index_of_the_rows_they_ask_for(
    nodes: Nodes,
) -> None:
    fm = nodes.services[A]

    def transfer() -> None:
        receipts = fm.transfer(requests_of("plans-t"))
        assert [r.state for r in receipts] == ["posted"] * BATCH, receipts
        fm.delivery.pump_once(scan=False)  # the posts reach CarePlus, their messages are deleted

    statements = nodes.run(transfer)
    assert fm.status()["outbox"] == 0
    assert all(statements.values())
    check_node_plans(nodes, statements)


def test_the_periodic_passes_read_what_is_open_due_or_queued_never_the_history(nodes: Nodes) -> None:
    fm, cp = nodes.services[A], nodes.services[B]
    # A batch CarePlus reserved and FreshMart never heard back about: both sides time it out.
    _, messages = fm.source.reserve(requests_of("plans-p"))
    cp.destination.reserve(A, messages[B])
    nodes.clock.at += timedelta(minutes=5)
    # A batch whose reserve message was lost, within its timeout: recovery resends it from the
    # reserved rows (they are the pending messages), CarePlus reserves, FreshMart posts.
    lost, _ = fm.source.reserve(requests_of("plans-r"))
    assert {r.state for r in lost} == {"reserved"}
    start, end = nodes.clock.at - timedelta(days=1), nodes.clock.at + timedelta(days=1)
    totals: list[dict[str, Any]] = []

    def passes() -> None:
        for service in (fm, cp):
            service.delivery.recover(in_doubt_after_s=60)  # voids, resends, asks about the in-doubt
            service.audit.drain()
        fm.settlements.settle(B, fm.peer(B), start, end, coordinator=totals.append)

    statements = nodes.run(passes)
    assert fm.status().get("source_voided", 0) >= BATCH and cp.status().get("destination_reserved", 0) == 0
    assert {r.state for r in fm.source.receipts([r.transfer_id for r in lost])} == {"posted"}
    assert totals and totals[0]["reconciled"]
    # The resend reads the reservations awaiting an answer oldest first, in the index's order.
    awaiting = [s for s in statements[A] if "ORDER BY points_interchange.updated_at_us" in s]
    plans = [line for sql in awaiting for line in plan_of(nodes.paths[A], sql)]
    assert awaiting and not [line for line in plans if "TEMP B-TREE" in line], plans
    check_node_plans(nodes, statements, queues=True)
