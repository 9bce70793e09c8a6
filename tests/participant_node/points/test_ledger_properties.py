"""Hypothesis properties of the ledger: invariants after any sequence, idempotency of every id."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from participant_node.points.ledger import Ledger
from participant_node.points.ledger_rules import AccountFlags, Result, Transfer, TransferKind, UsageLimit

MEMBERS = [f"member:m{i}" for i in range(3)]
OTHERS = ["issuance", "clearing:peer"]

new_transfer = st.builds(
    lambda n, kind, d, c, amount, cap, linked: Transfer(
        f"t{n}",
        d,
        c,
        amount,
        kind=kind,
        linked=linked,
        limits=(UsageLimit(f"cap:{d}", cap, amount),) if cap else (),
    ),
    st.integers(0, 30),
    st.sampled_from([TransferKind.SINGLE, TransferKind.PENDING]),
    st.sampled_from(MEMBERS + OTHERS[1:]),
    st.sampled_from(MEMBERS + OTHERS),
    st.integers(-5, 400),
    st.sampled_from([0, 300, 1_000]),
    st.booleans(),
)
resolution = st.builds(
    lambda n, kind, p: Transfer(f"r{n}", kind=kind, pending_id=f"t{p}"),
    st.integers(0, 30),
    st.sampled_from([TransferKind.POST, TransferKind.VOID]),
    st.integers(0, 30),
)
batches = st.lists(st.lists(st.one_of(new_transfer, resolution), min_size=1, max_size=6), max_size=8)


def fresh_ledger() -> Ledger:
    ledger = Ledger("sqlite://", synchronous="NORMAL", clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ledger.open_accounts(
        [(m, "member", None, flags) for m in MEMBERS]
        + [(o, "other", None, AccountFlags.NONE) for o in OTHERS]
    )
    ledger.submit([Transfer(f"seed-{m}", "issuance", m, 500) for m in MEMBERS])
    return ledger


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_invariants_hold_after_any_sequence(batches: list[list[Transfer]]) -> None:
    ledger = fresh_ledger()
    try:
        for batch in batches:
            ledger.submit(batch)
            check = ledger.verify()
            assert check.ok, check.problems
            for member in MEMBERS:
                balance = ledger.balance(member)
                assert balance is not None and balance.available >= 0
    finally:
        ledger.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.data())
def test_same_id_same_fields_same_outcome_different_fields_refused(
    batches: list[list[Transfer]], data: st.DataObject
) -> None:
    ledger = fresh_ledger()
    try:
        first: dict[str, tuple[Transfer, Result]] = {}
        for batch in batches:
            for transfer, outcome in zip(batch, ledger.submit(batch), strict=True):
                if transfer.id in first:
                    original, result = first[transfer.id]
                    expected = result if original == transfer else Result.EXISTS_WITH_DIFFERENT_FIELDS
                    assert outcome.replay and outcome.result is expected
                else:
                    first[transfer.id] = (transfer, outcome.result)
        before = ledger.verify()
        for id_, (transfer, result) in first.items():
            again = ledger.submit([transfer])[0]
            assert (again.result, again.replay) == (result, True), id_
            changed = Transfer(
                id_, kind=transfer.kind, amount=transfer.amount + 1, pending_id=transfer.pending_id
            )
            assert ledger.submit([changed])[0].result is Result.EXISTS_WITH_DIFFERENT_FIELDS
        assert ledger.verify().transfers == before.transfers  # retries wrote nothing
    finally:
        ledger.close()
