"""The pure state machine (``ledger_rules.apply``) on in-memory states, no database.

- the fields hash is the digest stored ledgers hold: sha256 of the fields' ``str`` joined by U+001F;
- a transfer row's limits are ``json.dumps`` of ``[[key, cap, amount], ...]``;
- after any sequence of batches, every balance and usage counter equals its start plus the effects
  of the rows written (a failed linked chain, undone, leaves no row and no effect), and the journal
  names every account and counter that changed.
"""

from __future__ import annotations

import hashlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from participant_node.points.ledger_rules import (
    AccountFlags,
    Balance,
    LedgerState,
    PendingRecord,
    Result,
    Transfer,
    TransferKind,
    UsageLimit,
    apply,
    expire_pending,
)

MEMBERS = ["member:m0", "member:m1", "member:m2"]
OTHERS = ["clearing:peer", "fee", "issuance"]
KEYS = ["cap:day", "cap:month", 'cap:"é\\']
IDS = [f"t{n}" for n in range(20)]

limits = st.lists(
    st.builds(UsageLimit, st.sampled_from(KEYS), st.integers(1, 900), st.integers(-5, 400)), max_size=3
).map(tuple)
new_transfer = st.builds(
    Transfer,
    st.sampled_from(IDS),
    st.sampled_from([*MEMBERS, *OTHERS, "missing"]),
    st.sampled_from([*MEMBERS, *OTHERS]),
    st.integers(-5, 400),
    kind=st.sampled_from([TransferKind.SINGLE, TransferKind.PENDING]),
    timeout_us=st.sampled_from([None, 0, 5, 50]),
    code=st.sampled_from(["transfer", "interchange_out"]),
    agreement_id=st.sampled_from([None, "agreement-ab"]),
    link_hash=st.sampled_from([None, "ab" * 32]),
    limits=limits,
    linked=st.booleans(),
)
resolution = st.builds(
    lambda n, kind, pending, linked: Transfer(f"r{n}", kind=kind, pending_id=pending, linked=linked),
    st.integers(0, 20),
    st.sampled_from([TransferKind.POST, TransferKind.VOID]),
    st.sampled_from(IDS),
    st.booleans(),
)
batches = st.lists(
    st.tuples(st.integers(0, 30), st.lists(st.one_of(new_transfer, resolution), min_size=1, max_size=6)),
    max_size=8,
)


def test_fields_hash_is_the_digest_stored_ledgers_hold() -> None:
    # Values computed by the code that wrote the existing ledgers (before the hash was built with
    # one f-string): a retried id is compared with them.
    debit = Transfer(
        "tr-7:debit",
        "member:m7",
        "clearing:peer-b",
        100,
        kind=TransferKind.PENDING,
        timeout_us=600_000_000,
        code="interchange_out",
        agreement_id="agreement-ab",
        link_hash="ab" * 32,
        limits=(
            UsageLimit("agreement-ab:a>b:member:m7:d20261207", 5_000, 100),
            UsageLimit("agreement-ab:a>b:d20261207", 10_000_000, 100),
        ),
        linked=True,
    )
    assert debit.fields_hash == "c61fc1bb1a0c98942344033cee69cfb578d1ebb97a81d4dc9f54e4a574f381e9"
    post = Transfer("tr-7:debit:post", kind=TransferKind.POST, pending_id="tr-7:debit")
    assert post.fields_hash == "71f064c5d62f8c44efca5f8f516a838f83ed53a0e5395f34eee9bb83afe24684"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.one_of(new_transfer, resolution))
def test_fields_hash_is_sha256_of_the_fields_joined(transfer: Transfer) -> None:
    limits = ";".join(f"{u.key},{u.cap},{u.amount}" for u in transfer.limits)
    fields = (
        transfer.id,
        transfer.debit_account,
        transfer.credit_account,
        transfer.amount,
        transfer.kind,
        transfer.pending_id,
        transfer.timeout_us,
        transfer.code,
        transfer.agreement_id,
        transfer.link_hash,
        limits,
        transfer.linked,
    )
    expected = hashlib.sha256("\x1f".join(map(str, fields)).encode()).hexdigest()
    assert transfer.fields_hash == expected
    assert transfer.fields_hash == expected  # the cached value
    assert transfer == Transfer(**{f: getattr(transfer, f) for f in Transfer.__dataclass_fields__})


def fresh_state() -> LedgerState:
    flags = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    balances = {m: Balance(credits_posted=500, flags=flags) for m in MEMBERS}
    balances.update({o: Balance() for o in OTHERS})
    return LedgerState(balances=balances, usage={KEYS[0]: 40}, pendings={}, known={}, now_us=1_000)


def _numbers(balance: Balance) -> tuple[int, int, int, int]:
    return balance.debits_pending, balance.debits_posted, balance.credits_pending, balance.credits_posted


def _replay_rows(
    start: LedgerState, rows: list[dict[str, object]]
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Balances and usage from ``start`` plus the effects of ``rows`` (TigerBeetle's two phases;
    limits charged by a new transfer, given back by a void or an expiry)."""
    balances = {a: list(_numbers(b)) for a, b in start.balances.items()}
    usage = dict(start.usage)
    limits_of: dict[str, list[list[object]]] = {}
    for row in rows:
        debit, credit = balances[str(row["debit_account"])], balances[str(row["credit_account"])]
        points = int(str(row["amount"]))
        kind = row["kind"]
        if kind == "single":
            debit[1] += points
            credit[3] += points
        elif kind == "pending":
            debit[0] += points
            credit[2] += points
        else:
            debit[0] -= points
            credit[2] -= points
            if kind == "post":
                debit[1] += points
                credit[3] += points
        if kind in ("single", "pending"):
            charged = json.loads(str(row["limits"])) if row["limits"] else []
            limits_of[str(row["id"])] = charged
            for key, _, used in charged:
                usage[key] = usage.get(key, 0) + used
        elif kind in ("void", "expire"):
            for key, _, used in limits_of[str(row["pending_id"])]:
                usage[key] -= used
    return balances, usage


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_balances_and_usage_are_the_rows_effects_and_the_journal_names_them(
    batches: list[tuple[int, list[Transfer]]],
) -> None:
    state, start, rows = fresh_state(), fresh_state(), []
    for elapsed, batch in batches:
        state.now_us += elapsed
        before = {a: _numbers(b) for a, b in state.balances.items()}
        usage_before = dict(state.usage)
        outcomes = apply(batch, state)
        assert [o.id for o in outcomes] == [t.id for t in batch]
        due = [
            i
            for i, p in state.pendings.items()
            if p.resolved is None and p.expires_at_us is not None and p.expires_at_us <= state.now_us
        ]
        for pending_id in due[::2]:  # as LedgerTx.expire_due: the timeouts recorded later
            expire_pending(state, pending_id)
        for row in state.rows:
            if row["limits"]:
                limits_of_row = tuple(UsageLimit(k, c, a) for k, c, a in json.loads(str(row["limits"])))
                assert row["limits"] == json.dumps([[u.key, u.cap, u.amount] for u in limits_of_row])
        changed = {a for a, b in state.balances.items() if _numbers(b) != before[a]}
        assert changed <= state.changed_accounts()
        assert state.changed_accounts() <= {
            str(row[side]) for row in state.rows for side in ("debit_account", "credit_account")
        }
        used = {k for k, v in state.usage.items() if v != usage_before.get(k, 0)}
        assert used <= state.changed_usage_keys()
        rows += state.rows
        state.rows, state.requests = [], []
        state.clear_changes()
        balances, usage = _replay_rows(start, rows)
        assert {a: list(_numbers(b)) for a, b in state.balances.items()} == balances
        assert {k: v for k, v in state.usage.items() if v} == {k: v for k, v in usage.items() if v}
        for member in MEMBERS:
            assert state.balances[member].available >= 0


def test_a_failed_chain_is_undone_and_its_transfers_refused_together() -> None:
    state = fresh_state()
    state.pendings["p0"] = PendingRecord("member:m1", "clearing:peer", 30, None, ())
    state.balances["member:m1"].debits_pending += 30
    state.balances["clearing:peer"].credits_pending += 30
    before = {a: _numbers(b) for a, b in state.balances.items()}
    cap = (UsageLimit(KEYS[0], 100, 50),)
    chain = [
        Transfer("a", MEMBERS[0], "clearing:peer", 50, kind=TransferKind.PENDING, limits=cap, linked=True),
        Transfer("b", kind=TransferKind.POST, pending_id="p0", linked=True),
        Transfer("c", MEMBERS[0], "fee", 600, kind=TransferKind.PENDING),  # exceeds the credits
    ]
    outcomes = apply(chain, state)
    assert [o.result for o in outcomes] == [
        Result.LINKED_EVENT_FAILED,
        Result.LINKED_EVENT_FAILED,
        Result.EXCEEDS_CREDITS,
    ]
    assert {a: _numbers(b) for a, b in state.balances.items()} == before
    assert state.usage[KEYS[0]] == 40
    assert state.pendings["p0"].resolved is None and "a" not in state.pendings
    assert state.rows == [] and [r["id"] for r in state.requests] == ["a", "b", "c"]
    assert state.changed_accounts() == set() and state.changed_usage_keys() == set()
