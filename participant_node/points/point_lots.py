"""Points keep their expiry: a member account's points as lots by expiry moment, spent oldest first.

Programme terms say points expire a fixed time after they were earned (36 months by default,
``policies.loyalty_programme``) and are spent first-expiring first; points moved to a partner keep
that expiry, unless the interchange agreement sets its own rule (``moved_points_expiry_months``:
moved points then expire that many months after the transfer posts). The ledger keeps balances;
this module keeps, beside them and in the same transaction, which expiry each point carries:

- crediting points adds to the lot of their expiry (opening issuance, a posted interchange credit);
- a reservation takes the points it moves from the earliest-expiring unexpired lots and holds them
  (``take``); a void puts them back (``restore``), a post consumes them (``release``);
- the destination holds the expiry of the credit it reserved and adds it to the member's lots when
  the credit posts (``credit_held``);
- ``expire_due`` moves every lot whose moment passed to the expiry account (a ledger transfer).

Invariant: a member's lots sum to the account's available balance (credits posted − debits posted
− debits pending); a reservation can only move unexpired points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from participant_node.points.bulk_statements import delete_in, insert_rows, select_in, upsert_add
from participant_node.points.ledger import AccountKind, LedgerTx, account_id
from participant_node.points.ledger_rules import Transfer
from participant_node.points.store_schema import TABLES
from policies.loyalty_programme import LoyaltyProgramme, add_months

__all__ = [
    "UNTRACKED_EXPIRY_MONTHS",
    "Slice",
    "add_lots",
    "add_to_lots",
    "credit_held",
    "expire_due",
    "held",
    "hold",
    "lots_of",
    "release",
    "restore",
    "split_credit",
    "take",
    "untracked_expiry",
]

_LOTS, _HOLDS = TABLES["points_lots"], TABLES["points_lot_holds"]
_EXPIRY = account_id(AccountKind.EXPIRY)
# Points of an account with no lots recorded (a ledger opened before lots were kept) are taken as
# earned at the transfer: they carry the programme's default expiry from then.
UNTRACKED_EXPIRY_MONTHS: int = LoyaltyProgramme.model_fields["expiry_months"].default


@dataclass(frozen=True)
class Slice:
    """``points`` that expire at ``expires_at_us``."""

    points: int
    expires_at_us: int


def _row(account: str, s: Slice, sign: int = 1) -> dict[str, int | str]:
    return {"account": account, "expires_at_us": s.expires_at_us, "points": sign * s.points}


def _open_lots(account: str) -> Any:
    return select(_LOTS).where(_LOTS.c.account == account, _LOTS.c.points > 0).order_by(_LOTS.c.expires_at_us)


def _upsert(conn: Connection, rows: list[dict[str, int | str]]) -> None:
    """Add ``points`` to each (account, expiry) lot, creating it if new."""
    upsert_add(
        conn,
        _LOTS,
        ("account", "expires_at_us", "points"),
        ("account", "expires_at_us"),
        [(r["account"], r["expires_at_us"], r["points"]) for r in rows],
        add="points",
    )


def add_lots(conn: Connection, account: str, slices: Iterable[Slice]) -> None:
    merged: dict[int, int] = {}
    for s in slices:
        if s.points > 0:
            merged[s.expires_at_us] = merged.get(s.expires_at_us, 0) + s.points
    _upsert(conn, [_row(account, Slice(p, e)) for e, p in sorted(merged.items())])


def add_to_lots(conn: Connection, credits: Sequence[tuple[str, Slice]]) -> None:
    """Add each (account, slice) to that account's lot of the slice's expiry, for many accounts in
    one write: slices of one lot merged first, then in account and expiry order (as ``add_lots``:
    one lock order for every transaction)."""
    merged: dict[tuple[str, int], int] = {}
    for account, s in credits:
        if s.points > 0:
            merged[account, s.expires_at_us] = merged.get((account, s.expires_at_us), 0) + s.points
    _upsert(conn, [_row(account, Slice(p, e)) for (account, e), p in sorted(merged.items())])


def lots_of(conn: Connection, account: str) -> list[Slice]:
    return [Slice(r.points, r.expires_at_us) for r in conn.execute(_open_lots(account))]


def take(tx: LedgerTx, wanted: Sequence[tuple[str, str, int]]) -> dict[str, list[Slice] | None]:
    """For each (reservation key, account, points), hold that many of the account's unexpired
    points, earliest expiry first, in order (one query and one write for the whole batch).

    Per key: the slices taken; ``[]`` when the account has no lots at all (untracked) or fewer
    points in all its lots than asked (the ledger then refuses the debit for the balance itself);
    ``None`` when the points are there but some have expired (nothing is taken for that key)."""
    accounts = sorted({account for _, account, _ in wanted})
    lots: dict[str, list[list[int]]] = {a: [] for a in accounts}
    found = select_in(
        tx.conn,
        _LOTS,
        "account",
        accounts,
        also="points > 0",
        order_by="account, expires_at_us",
        lock=True,
    )
    for r in found:
        lots[r.account].append([r.expires_at_us, r.points])
    taken: dict[str, list[Slice] | None] = {}
    changes: list[dict[str, int | str]] = []
    holds: list[dict[str, int | str]] = []
    for key, account, points in wanted:
        enough = sum(lot[1] for lot in lots[account]) >= points
        slices = _take_from(lots[account], points, tx.now_us) if lots[account] and enough else []
        taken[key] = slices
        for s in slices or ():
            changes.append(_row(account, s, -1))
            holds.append({"key": key, **_row(account, s)})
    _upsert(tx.conn, changes)
    insert_rows(tx.conn, _HOLDS, holds)
    return taken


def _take_from(lots: list[list[int]], points: int, now_us: int) -> list[Slice] | None:
    """Take ``points`` from ``lots`` ([expiry, points] by expiry, updated in place) or nothing."""
    plan, left = [], points
    for lot in lots:
        if left == 0:
            break
        if lot[0] > now_us and lot[1] > 0:
            used = min(left, lot[1])
            plan.append((lot, used))
            left -= used
    if left:
        return None
    for lot, used in plan:
        lot[1] -= used
    return [Slice(used, lot[0]) for lot, used in plan]


def hold(conn: Connection, holds: Sequence[tuple[str, str, Sequence[Slice]]]) -> None:
    """Hold, for each (reservation key, account, slices), those slices (one write for all)."""
    insert_rows(
        conn,
        _HOLDS,
        [
            {"key": key, "expires_at_us": s.expires_at_us, "account": account, "points": s.points}
            for key, account, slices in holds
            for s in slices
        ],
    )


def held(conn: Connection, keys: Sequence[str]) -> dict[str, list[Slice]]:
    """The slices each reservation in ``keys`` holds, earliest expiry first."""
    out: dict[str, list[Slice]] = {}
    for key, _, s in sorted(_held(conn, keys), key=lambda h: h[2].expires_at_us):
        out.setdefault(key, []).append(s)
    return out


def _held(conn: Connection, keys: Sequence[str]) -> list[tuple[str, str, Slice]]:
    return [
        (r.key, r.account, Slice(r.points, r.expires_at_us)) for r in select_in(conn, _HOLDS, "key", keys)
    ]


def _drop(conn: Connection, keys: Sequence[str]) -> None:
    delete_in(conn, _HOLDS, "key", keys)


def restore(conn: Connection, keys: Sequence[str]) -> None:
    """Voided reservations: the points they took go back to their lots (expired ones lapse later)."""
    holds = _held(conn, keys)
    _upsert(conn, [_row(a, s) for _, a, s in holds])
    _drop(conn, keys)


def release(conn: Connection, keys: Sequence[str]) -> None:
    """Posted (source) or voided (destination) reservations: their holds end, the lots stay as they are."""
    _drop(conn, keys)


def credit_held(conn: Connection, keys: Sequence[str]) -> None:
    """Posted credits (destination): the expiry they were reserved with becomes the member's lots."""
    holds = _held(conn, keys)
    _upsert(conn, [_row(a, s) for _, a, s in holds])
    _drop(conn, keys)


def split_credit(taken: Sequence[Slice], points: int, credited: int) -> list[Slice]:
    """The ``credited`` destination points, carrying the expiry of the first ``points`` taken
    (the rest paid the fee), in proportion, exactly (floors of cumulative shares sum to ``credited``)."""
    out, moved, done = [], 0, 0
    for s in taken:
        share = min(s.points, points - moved)
        if share <= 0:
            break
        moved += share
        upto = credited * moved // points
        if upto > done:
            out.append(Slice(upto - done, s.expires_at_us))
        done = upto
    return out


def expire_due(tx: LedgerTx, *, limit: int = 10_000) -> int:
    """Move every lot whose expiry passed to the expiry account; returns the points expired."""
    query = select(_LOTS).where(_LOTS.c.expires_at_us <= tx.now_us, _LOTS.c.points > 0).limit(limit)
    due = list(tx.conn.execute(query))
    if not due:
        return 0
    transfers = [
        # The id names neither the member nor the account: a hash of both and the moment.
        Transfer(
            "lot-expiry-" + _digest(r.account, r.expires_at_us, tx.now_us),
            r.account,
            _EXPIRY,
            r.points,
            code="points_expiry",
        )
        for r in due
    ]
    outcomes = tx.apply(transfers)
    expired = [r for r, o in zip(due, outcomes, strict=True) if o.ok]
    _upsert(
        tx.conn,
        [{"account": r.account, "expires_at_us": r.expires_at_us, "points": -r.points} for r in expired],
    )
    return sum(r.points for r in expired)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:40]


def untracked_expiry(now_us: int) -> int:
    """When points with no recorded lot, moved at ``now_us``, expire."""
    moment = datetime.fromtimestamp(now_us / 1_000_000, UTC)
    return int(add_months(moment, UNTRACKED_EXPIRY_MONTHS).timestamp() * 1_000_000)
