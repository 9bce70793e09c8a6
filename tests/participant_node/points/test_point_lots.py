"""Points keep their expiry, on SQLite and PostgreSQL: lots spent earliest-expiry first, held by a
reservation, restored by a void, credited with the source's expiry, and lapsed to the expiry account."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from participant_node.points import point_lots
from participant_node.points.ledger import AccountKind, Ledger, account_id
from participant_node.points.ledger_rules import AccountFlags, Transfer, TransferKind
from participant_node.points.point_lots import Slice

ISSUANCE = account_id(AccountKind.ISSUANCE)
EXPIRY = account_id(AccountKind.EXPIRY)
CLEARING = account_id(AccountKind.CLEARING, "careplus")
MEMBER = account_id(AccountKind.MEMBER, "m1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(ledger_url: str, clock: Clock) -> Iterator[Ledger]:
    ledger = Ledger(ledger_url, synchronous="NORMAL", clock=clock)
    none, floor = AccountFlags.NONE, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ledger.open_accounts(
        [
            (ISSUANCE, AccountKind.ISSUANCE, None, none),
            (EXPIRY, AccountKind.EXPIRY, None, none),
            (CLEARING, AccountKind.CLEARING, "careplus", none),
            (MEMBER, AccountKind.MEMBER, None, floor),
        ]
    )
    # 300 points expiring in March, 500 in June, 200 in December (three purchases' lots).
    lots = [Slice(500, us(T0 + timedelta(days=150))), Slice(300, us(T0 + timedelta(days=60)))]
    lots.append(Slice(200, us(T0 + timedelta(days=330))))
    with ledger.transaction() as tx:
        tx.apply([Transfer("opening-1", ISSUANCE, MEMBER, 1_000, code="opening")])
        point_lots.add_lots(tx.conn, MEMBER, lots)
    yield ledger
    ledger.close()


def _lots(ledger: Ledger) -> list[tuple[int, int]]:
    with ledger.reading() as conn:
        return [(s.points, s.expires_at_us) for s in point_lots.lots_of(conn, MEMBER)]


def _available(ledger: Ledger) -> int:
    balance = ledger.balance(MEMBER)
    assert balance is not None
    return balance.available


def test_spent_earliest_expiry_first_held_then_restored_by_a_void(ledger: Ledger) -> None:
    march, june = us(T0 + timedelta(days=60)), us(T0 + timedelta(days=150))
    with ledger.transaction() as tx:
        taken = point_lots.take(tx, [("t1", MEMBER, 400), ("t2", MEMBER, 700)])
        tx.apply([Transfer("t1:debit", MEMBER, CLEARING, 400, kind=TransferKind.PENDING, timeout_us=10**9)])
    assert taken["t1"] == [Slice(300, march), Slice(100, june)]
    assert taken["t2"] == []  # 600 points left in all: the ledger refuses t2 for the balance
    assert sum(p for p, _ in _lots(ledger)) == _available(ledger) == 600
    with ledger.transaction() as tx:
        tx.apply([Transfer("t1:void", kind=TransferKind.VOID, pending_id="t1:debit")])
        point_lots.restore(tx.conn, ["t1"])
    assert _lots(ledger)[0] == (300, march) and sum(p for p, _ in _lots(ledger)) == _available(ledger)


def test_credit_keeps_the_source_expiry_in_proportion(ledger: Ledger) -> None:
    march, june = us(T0 + timedelta(days=60)), us(T0 + timedelta(days=150))
    # 1,000 moved plus a 10-point fee, credited 800 at 4:5: the fee takes the last of the lots taken.
    taken = [Slice(300, march), Slice(500, june), Slice(210, us(T0 + timedelta(days=330)))]
    credit = point_lots.split_credit(taken, 1_000, 800)
    assert credit == [Slice(240, march), Slice(400, june), Slice(160, us(T0 + timedelta(days=330)))]
    assert sum(s.points for s in point_lots.split_credit(taken[:1], 7, 3)) == 3


def test_lapsed_lots_move_to_the_expiry_account_and_cannot_be_moved(ledger: Ledger, clock: Clock) -> None:
    clock.at = T0 + timedelta(days=200)  # March and June lots lapsed, December's stands
    with ledger.transaction() as tx:
        assert point_lots.take(tx, [("t3", MEMBER, 300)])["t3"] is None  # held, but 100 expired
    with ledger.transaction() as tx:
        assert point_lots.expire_due(tx) == 800
    with ledger.transaction() as tx:
        assert point_lots.expire_due(tx) == 0  # once only
    assert _available(ledger) == 200 and _lots(ledger) == [(200, us(T0 + timedelta(days=330)))]
    expired = ledger.balance(EXPIRY)
    assert expired is not None and expired.credits_posted == 800
    assert ledger.verify().ok
