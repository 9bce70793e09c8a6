"""The ledger's contract, on SQLite and PostgreSQL: two-phase transfers, idempotency, links, limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from participant_node.points.ledger import SWEEP_GRACE_US, AccountKind, Ledger, account_id, now_us
from participant_node.points.ledger_rules import AccountFlags, Result, Transfer, TransferKind, UsageLimit

ISSUANCE = account_id(AccountKind.ISSUANCE)
CLEARING = account_id(AccountKind.CLEARING, "careplus")
FEES = account_id(AccountKind.FEE)


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


def member(n: int) -> str:
    return account_id(AccountKind.MEMBER, f"m{n}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(ledger_url: str, clock: Clock) -> Iterator[Ledger]:
    ledger = Ledger(ledger_url, synchronous="NORMAL", clock=clock)
    flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ledger.open_accounts(
        [
            (ISSUANCE, "issuance", None, AccountFlags.NONE),
            (CLEARING, "clearing", "careplus", AccountFlags.NONE),
            (FEES, "fee", None, AccountFlags.NONE),
        ]
        + [(member(n), "member", None, flags) for n in range(4)]
    )
    outcomes = ledger.submit(
        [Transfer(f"open-{n}", ISSUANCE, member(n), 1_000, code="opening") for n in range(4)]
    )
    assert all(o.ok for o in outcomes)
    yield ledger
    ledger.close()


def pending(id_: str, amount: int = 100, **kw: object) -> Transfer:
    return Transfer(id_, member(0), CLEARING, amount, kind=TransferKind.PENDING, **kw)  # type: ignore[arg-type]


def test_pending_then_post_moves_points_once(ledger: Ledger) -> None:
    assert ledger.submit([pending("t1")])[0].ok
    reserved = ledger.balance(member(0))
    assert reserved is not None and (reserved.available, reserved.posted) == (900, 1_000)
    assert ledger.submit([Transfer("t1:post", kind=TransferKind.POST, pending_id="t1")])[0].ok
    after = ledger.balance(member(0))
    assert after is not None and (after.available, after.posted, after.debits_pending) == (900, 900, 0)
    second = ledger.submit([Transfer("t1:void", kind=TransferKind.VOID, pending_id="t1")])[0]
    assert second.result is Result.PENDING_ALREADY_POSTED
    assert ledger.verify().ok


def test_an_expiry_sweep_starts_where_the_last_complete_one_ended(ledger: Ledger, clock: Clock) -> None:
    ledger.submit([pending("a", timeout_us=1_000_000), pending("b", timeout_us=1_000_000)])
    ledger.submit([Transfer("b:post", kind=TransferKind.POST, pending_id="b")])
    clock.at += timedelta(seconds=2)
    assert ledger.expiry_swept_below_us == 0  # a new process sweeps the whole history once
    assert ledger.expire_due() == ["a"]
    assert ledger.expiry_swept_below_us == now_us(clock.at) - SWEEP_GRACE_US
    clock.at += timedelta(minutes=5)
    assert ledger.expire_due() == []
    assert ledger.expiry_swept_below_us == now_us(clock.at) - SWEEP_GRACE_US


def test_a_reservation_made_after_the_clock_went_back_still_expires(ledger: Ledger, clock: Clock) -> None:
    ledger.submit([pending("early", timeout_us=1_000_000)])
    clock.at += timedelta(minutes=10)
    assert ledger.expire_due() == ["early"]
    clock.at -= timedelta(minutes=9)  # further back than the sweep's grace
    ledger.submit([pending("late", timeout_us=1_000_000)])
    assert ledger.expiry_swept_below_us == 0
    clock.at += timedelta(seconds=2)
    assert ledger.expire_due() == ["late"]


def test_a_sweep_that_rolled_back_leaves_its_reservations_due(ledger: Ledger, clock: Clock) -> None:
    ledger.submit([pending("c", timeout_us=1_000_000)])
    clock.at += timedelta(seconds=2)
    with pytest.raises(RuntimeError), ledger.transaction() as tx:
        assert tx.expire_due() == ["c"]
        raise RuntimeError("the caller failed after the sweep")
    assert ledger.expiry_swept_below_us == 0
    assert ledger.expire_due() == ["c"]
    assert ledger.verify().ok


def test_void_releases_and_timeout_expires(ledger: Ledger, clock: Clock) -> None:
    ledger.submit([pending("v"), pending("x", timeout_us=1_000_000)])
    assert ledger.submit([Transfer("v:void", kind=TransferKind.VOID, pending_id="v")])[0].ok
    clock.at += timedelta(seconds=2)
    late = ledger.submit([Transfer("x:post", kind=TransferKind.POST, pending_id="x")])[0]
    assert late.result is Result.PENDING_EXPIRED
    assert ledger.expire_due() == ["x"]
    balance = ledger.balance(member(0))
    assert balance is not None and balance.available == 1_000
    check = ledger.verify()
    assert check.ok and check.pending == 0


def test_idempotency_same_fields_first_outcome_different_fields_refused(ledger: Ledger) -> None:
    first = ledger.submit([pending("dup", 2_000)])[0]
    assert first.result is Result.EXCEEDS_CREDITS
    ledger.submit([Transfer("top-up", ISSUANCE, member(0), 5_000)])
    again = ledger.submit([pending("dup", 2_000)])[0]
    assert (again.result, again.replay) == (Result.EXCEEDS_CREDITS, True)  # a retry never changes it
    changed = ledger.submit([pending("dup", 1_999)])[0]
    assert changed.result is Result.EXISTS_WITH_DIFFERENT_FIELDS
    ok = ledger.submit([pending("ok", 10)])[0]
    assert ok.ok and ledger.submit([pending("ok", 10)])[0] == type(ok)("ok", Result.OK, replay=True)
    assert ledger.verify().ok


def test_linked_legs_succeed_or_fail_together(ledger: Ledger) -> None:
    legs = [
        Transfer("l1", member(1), CLEARING, 900, kind=TransferKind.PENDING, linked=True),
        Transfer("l1-fee", member(1), FEES, 200, kind=TransferKind.PENDING),  # 1,100 > 1,000
    ]
    outcomes = ledger.submit(legs)
    assert [o.result for o in outcomes] == [Result.LINKED_EVENT_FAILED, Result.EXCEEDS_CREDITS]
    balance = ledger.balance(member(1))
    assert balance is not None and balance.available == 1_000
    open_chain = ledger.submit([Transfer("c1", member(2), CLEARING, 5, linked=True)])
    assert open_chain[0].result is Result.LINKED_CHAIN_OPEN
    again = ledger.submit([legs[0], Transfer("l2-fee", member(1), FEES, 100)])
    assert [o.result for o in again] == [Result.LINKED_EVENT_FAILED] * 2  # l1's first outcome is final
    fresh = Transfer("l2", member(1), CLEARING, 900, kind=TransferKind.PENDING, linked=True)
    assert all(o.ok for o in ledger.submit([fresh, Transfer("l3-fee", member(1), FEES, 100)]))
    assert ledger.verify().ok


def test_limits_are_checked_at_reservation_and_released_by_void(ledger: Ledger) -> None:
    cap = (UsageLimit("day:m0", 150, 100),)
    assert ledger.submit([pending("a", limits=cap)])[0].ok
    assert ledger.submit([pending("b", limits=cap)])[0].result is Result.LIMIT_EXCEEDED
    ledger.submit([Transfer("a:void", kind=TransferKind.VOID, pending_id="a")])
    assert ledger.submit([pending("c", limits=cap)])[0].ok
    assert ledger.submit([Transfer("c:post", kind=TransferKind.POST, pending_id="c")])[0].ok
    assert ledger.submit([pending("d", limits=cap)])[0].result is Result.LIMIT_EXCEEDED  # posted still counts


def test_a_late_post_fails_and_the_expiry_gives_the_cap_back(ledger: Ledger, clock: Clock) -> None:
    cap = (UsageLimit("day:m0", 150, 100),)
    assert ledger.submit([pending("e", limits=cap, timeout_us=1_000_000)])[0].ok
    assert ledger.submit([pending("f", limits=cap)])[0].result is Result.LIMIT_EXCEEDED
    clock.at += timedelta(seconds=2)
    late = ledger.submit([Transfer("e:post", kind=TransferKind.POST, pending_id="e")])[0]
    assert late.result is Result.PENDING_EXPIRED  # the timeout came first
    assert ledger.expire_due() == ["e"]
    assert ledger.submit([pending("g", limits=cap)])[0].ok  # the expiry gave the cap back
    assert ledger.verify().ok


def test_refusals_without_writes(ledger: Ledger) -> None:
    results = ledger.submit(
        [
            Transfer("z", member(0), CLEARING, 0),
            Transfer("s", member(0), member(0), 1),
            Transfer("u", member(0), "member:nobody", 1),
            Transfer("p", kind=TransferKind.POST, pending_id="none"),
        ]
    )
    assert [r.result for r in results] == [
        Result.AMOUNT_MUST_BE_POSITIVE,
        Result.SAME_ACCOUNT,
        Result.ACCOUNT_NOT_FOUND,
        Result.PENDING_NOT_FOUND,
    ]
    assert ledger.verify().transfers == 4  # the four openings only


def test_concurrent_reservations_never_overdraw(ledger: Ledger) -> None:
    outcomes: list[Result] = []
    lock = threading.Lock()

    def reserve(worker: int) -> None:
        for k in range(10):
            result = ledger.submit([pending(f"w{worker}-{k}", 30)])[0].result
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=reserve, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(Result.OK) == 33  # floor(1,000 / 30)
    balance = ledger.balance(member(0))
    assert balance is not None and balance.available == 10
    assert ledger.verify().ok


def test_history_is_newest_first_and_immutable(ledger: Ledger) -> None:
    ledger.submit([pending("h1"), Transfer("h1:post", kind=TransferKind.POST, pending_id="h1")])
    kinds = [row["kind"] for row in ledger.history(member(0))]
    assert kinds == ["post", "pending", "single"]
