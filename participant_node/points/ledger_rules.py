"""The ledger's state machine, pure: which transfers succeed against a snapshot of balances.

TigerBeetle's transfer semantics (docs.tigerbeetle.com, "Two-phase transfers", "Linked events",
"Idempotency"), in miniature:

- a transfer moves ``amount`` from its debit account to its credit account: its two legs sum to
  zero by construction, and nothing is ever updated or deleted;
- a pending transfer reserves; exactly one of post, void or timeout (expire) resolves it later;
- the first outcome of a transfer id is final: a retry with the same fields returns it, a retry
  with different fields is refused (``exists_with_different_fields``), a retry never changes it;
- ``linked`` chains a transfer to the next one: the chain succeeds or fails as a whole;
- balance rules and usage limits (caps) are checked at reservation, so posting cannot break them.

``apply`` takes the requests and a ``LedgerState`` (balances, usage counters, pending transfers and
known outcomes of the ids involved) and returns the outcomes and the rows to write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntFlag, StrEnum
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

__all__ = [
    "AccountFlags",
    "Balance",
    "LedgerState",
    "Outcome",
    "PendingRecord",
    "Result",
    "Transfer",
    "TransferKind",
    "UsageLimit",
    "apply",
]


class AccountFlags(IntFlag):
    NONE = 0
    # A member cannot spend points they do not have, pending debits included.
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1


class TransferKind(StrEnum):
    SINGLE = "single"
    PENDING = "pending"
    POST = "post"
    VOID = "void"
    EXPIRE = "expire"


class Result(StrEnum):
    OK = "ok"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    ACCOUNT_NOT_FOUND = "account_not_found"
    SAME_ACCOUNT = "accounts_must_be_different"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    EXCEEDS_CREDITS = "exceeds_credits"
    LIMIT_EXCEEDED = "limit_exceeded"
    PENDING_NOT_FOUND = "pending_transfer_not_found"
    PENDING_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_EXPIRED = "pending_transfer_expired"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_CHAIN_OPEN = "linked_event_chain_open"


@dataclass(frozen=True)
class UsageLimit:
    """A cap on a counter (``key``: e.g. a member's day) that this transfer uses ``amount`` of."""

    key: str
    cap: int
    amount: int


@dataclass(frozen=True)
class Transfer:
    """One request. Post and void name ``pending_id`` and may leave accounts and amount empty."""

    id: str
    debit_account: str = ""
    credit_account: str = ""
    amount: int = 0
    kind: TransferKind = TransferKind.SINGLE
    pending_id: str | None = None
    timeout_us: int | None = None  # pending only: microseconds after creation
    code: str = "transfer"
    agreement_id: str | None = None
    link_hash: str | None = None
    limits: tuple[UsageLimit, ...] = ()
    linked: bool = False

    @property
    def fields_hash(self) -> str:
        """sha256 over every field: what "the same fields" means for idempotency.

        Computed once per transfer and kept in the instance (a plain cache: in Python 3.11
        ``functools.cached_property`` takes a lock on every first access, a cost paid per leg).
        The digest must never change for given fields: stored hashes are compared with it when an
        id is retried."""
        digest: str | None = self.__dict__.get("_fields_hash")
        if digest is None:
            digest = _fields_digest(self)
            object.__setattr__(self, "_fields_hash", digest)  # frozen: the cache is not a field
        return digest


def _fields_digest(t: Transfer) -> str:
    """sha256 hex of the fields' ``str`` joined by unit separators (no id, account or key contains
    U+001F), the limits as ``key,cap,amount`` joined by ``;``."""
    limits = ";".join([f"{u.key},{u.cap},{u.amount}" for u in t.limits])
    text = (
        f"{t.id!s}\x1f{t.debit_account!s}\x1f{t.credit_account!s}\x1f{t.amount!s}\x1f{t.kind!s}"
        f"\x1f{t.pending_id!s}\x1f{t.timeout_us!s}\x1f{t.code!s}\x1f{t.agreement_id!s}"
        f"\x1f{t.link_hash!s}\x1f{limits}\x1f{t.linked!s}"
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class Balance:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    flags: int = 0

    def copy(self) -> Balance:
        return Balance(
            self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted, self.flags
        )

    @property
    def posted(self) -> int:
        """Credits minus debits, posted only: a member's spendable points before reservations."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(slots=True)
class PendingRecord:
    debit_account: str
    credit_account: str
    amount: int
    expires_at_us: int | None
    limits: tuple[UsageLimit, ...]
    resolved: TransferKind | None = None
    code: str = "transfer"
    agreement_id: str | None = None
    link_hash: str | None = None

    def resolved_by(self, kind: TransferKind) -> PendingRecord:
        """This record once ``kind`` resolved it (field by field: ``dataclasses.replace``
        introspects the fields on every call, a cost paid per resolved leg)."""
        return PendingRecord(
            self.debit_account,
            self.credit_account,
            self.amount,
            self.expires_at_us,
            self.limits,
            kind,
            self.code,
            self.agreement_id,
            self.link_hash,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    result: Result
    replay: bool = False  # the id was seen before: this is its first outcome

    @property
    def ok(self) -> bool:
        return self.result is Result.OK


_Marks = tuple[int, int, int, int, int]


@dataclass
class LedgerState:
    """What ``apply`` needs to know, loaded (and locked) by the store for the ids involved.

    ``apply`` changes it in place and journals every change, newest last, so that a failed linked
    chain can be undone (TigerBeetle, "Linked events": the chain fails as a whole) and the store
    writes only the balances and usage counters that applied transfers changed. A move of points
    and a use of limits are journaled once per leg and undone by the opposite amounts (integers:
    exactly); a replaced entry of ``pendings`` or ``known`` by its old value."""

    balances: dict[str, Balance]
    usage: dict[str, int]
    pendings: dict[str, PendingRecord]
    known: dict[str, tuple[str, Result]]  # id -> (fields hash, first result)
    now_us: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # transfer rows to insert
    # First outcomes that are refusals, to insert: a success is recorded by its transfer row, which
    # carries the request's fields hash (as TigerBeetle answers a retried id from the stored transfer).
    requests: list[dict[str, Any]] = field(default_factory=list)
    _moves: list[tuple[str, str, int, TransferKind]] = field(default_factory=list)  # debit, credit, amount
    _uses: list[tuple[tuple[UsageLimit, ...], int]] = field(default_factory=list)  # limits, +1 or -1
    _replaced: list[tuple[dict[Any, Any], Any, Any]] = field(default_factory=list)  # table, key, old

    def changed_accounts(self) -> set[str]:
        """The accounts whose balance the applied transfers changed (a failed chain's are undone)."""
        return {account for debit, credit, _, _ in self._moves for account in (debit, credit)}

    def changed_usage_keys(self) -> set[str]:
        """The usage counters the applied transfers changed (a failed chain's are undone)."""
        return {limit.key for limits, _ in self._uses for limit in limits}

    def clear_changes(self) -> None:
        """Forget the journal, once the store has written what it names."""
        self._moves.clear()
        self._uses.clear()
        self._replaced.clear()

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._replaced.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def _mark(self) -> _Marks:
        return len(self.rows), len(self.requests), len(self._moves), len(self._uses), len(self._replaced)

    def _undo_to(self, marks: _Marks) -> None:
        """Undo every change made since ``marks``, newest first. A usage counter that a change
        created is left at zero, which reads the same (counters are read as ``usage.get(key, 0)``)."""
        rows, requests, moves, uses, replaced = marks
        del self.rows[rows:]
        del self.requests[requests:]
        for debit, credit, amount, kind in reversed(self._moves[moves:]):
            _shift(self.balances[debit], self.balances[credit], -amount, kind)
        del self._moves[moves:]
        for limits, sign in reversed(self._uses[uses:]):
            _add_usage(self.usage, limits, -sign)
        del self._uses[uses:]
        for table, key, old in reversed(self._replaced[replaced:]):
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old
        del self._replaced[replaced:]


_MISSING = object()
# A plain int: ``int & IntFlag`` goes through the enum's Python-level operators on every check.
_DEBITS_MUST_NOT_EXCEED_CREDITS = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)


def apply(requests: Sequence[Transfer], state: LedgerState) -> list[Outcome]:
    """Outcomes of ``requests`` in order; successful ones leave their rows in ``state.rows``."""
    outcomes: list[Outcome] = []
    start = 0
    while start < len(requests):
        end = start
        while end < len(requests) - 1 and requests[end].linked:
            end += 1
        outcomes += _apply_chain(requests[start : end + 1], state)
        start = end + 1
    return outcomes


def _apply_chain(chain: Sequence[Transfer], state: LedgerState) -> list[Outcome]:
    marks = state._mark()
    outcomes: list[Outcome] = []
    failed: Result | None = Result.LINKED_CHAIN_OPEN if chain[-1].linked else None
    for transfer in chain:
        if failed is not None:
            break
        outcome = _apply_one(transfer, state)
        outcomes.append(outcome)
        if not outcome.ok:
            failed = outcome.result
    if failed is None:
        return outcomes
    state._undo_to(marks)
    final = []
    for index, transfer in enumerate(chain):
        known = state.known.get(transfer.id)
        if known is not None:
            final.append(_replay(transfer, known))
            continue
        own = outcomes[index].result if index < len(outcomes) and not outcomes[index].ok else None
        result = own or (failed if failed is Result.LINKED_CHAIN_OPEN else Result.LINKED_EVENT_FAILED)
        _remember(state, transfer, result)
        final.append(Outcome(transfer.id, result))
    return final


def _remember(state: LedgerState, transfer: Transfer, result: Result) -> None:
    digest = transfer.fields_hash
    state._set(state.known, transfer.id, (digest, result))
    if result is Result.OK:
        return  # the transfer's own row records it
    state.requests.append(
        {"id": transfer.id, "fields_hash": digest, "result": str(result), "at_us": state.now_us}
    )


def _replay(transfer: Transfer, known: tuple[str, Result]) -> Outcome:
    digest, result = known
    if digest != transfer.fields_hash:
        return Outcome(transfer.id, Result.EXISTS_WITH_DIFFERENT_FIELDS, replay=True)
    return Outcome(transfer.id, result, replay=True)


def _apply_one(transfer: Transfer, state: LedgerState) -> Outcome:
    known = state.known.get(transfer.id)
    if known is not None:
        return _replay(transfer, known)
    if transfer.kind in (TransferKind.POST, TransferKind.VOID):
        outcome = _resolve(transfer, state)
        _remember(state, transfer, outcome.result)
        return outcome
    result = _check_new(transfer, state)
    _remember(state, transfer, result)
    if result is not Result.OK:
        return Outcome(transfer.id, result)
    _move(state, transfer.debit_account, transfer.credit_account, transfer.amount, transfer.kind)
    if transfer.limits:
        _use(state, transfer.limits, 1)
    expires = state.now_us + transfer.timeout_us if transfer.timeout_us is not None else None
    if transfer.kind is TransferKind.PENDING:
        state._set(
            state.pendings,
            transfer.id,
            PendingRecord(
                transfer.debit_account,
                transfer.credit_account,
                transfer.amount,
                expires,
                transfer.limits,
                None,
                transfer.code,
                transfer.agreement_id,
                transfer.link_hash,
            ),
        )
    state.rows.append(_row(transfer, transfer.kind, expires, state.now_us))
    return Outcome(transfer.id, Result.OK)


def _check_new(transfer: Transfer, state: LedgerState) -> Result:
    if transfer.kind not in (TransferKind.SINGLE, TransferKind.PENDING):
        return Result.PENDING_NOT_FOUND
    if transfer.amount <= 0:
        return Result.AMOUNT_MUST_BE_POSITIVE
    if transfer.debit_account == transfer.credit_account:
        return Result.SAME_ACCOUNT
    debit = state.balances.get(transfer.debit_account)
    if debit is None or transfer.credit_account not in state.balances:
        return Result.ACCOUNT_NOT_FOUND
    if debit.flags & _DEBITS_MUST_NOT_EXCEED_CREDITS and transfer.amount > debit.available:
        return Result.EXCEEDS_CREDITS
    usage = state.usage
    for limit in transfer.limits:
        if usage.get(limit.key, 0) + limit.amount > limit.cap:
            return Result.LIMIT_EXCEEDED
    return Result.OK


def _resolve(transfer: Transfer, state: LedgerState) -> Outcome:
    pending_id = transfer.pending_id or ""
    pending = state.pendings.get(pending_id)
    if pending is None:
        return Outcome(transfer.id, Result.PENDING_NOT_FOUND)
    if pending.resolved is TransferKind.POST:
        return Outcome(transfer.id, Result.PENDING_ALREADY_POSTED)
    if pending.resolved is TransferKind.VOID:
        return Outcome(transfer.id, Result.PENDING_ALREADY_VOIDED)
    if pending.resolved is TransferKind.EXPIRE:
        return Outcome(transfer.id, Result.PENDING_EXPIRED)
    if pending.expires_at_us is not None and state.now_us >= pending.expires_at_us:
        # The timeout came first: the post or void fails, and its chain's changes are rolled back
        # with it, so the expiry itself is recorded by the next expiry sweep
        # (Ledger.expire_due), as TigerBeetle's timeouts are by its own expiry pass.
        return Outcome(transfer.id, Result.PENDING_EXPIRED)
    _finish(state, transfer.id, pending_id, pending, transfer.kind, transfer.fields_hash)
    return Outcome(transfer.id, Result.OK)


def expire_pending(state: LedgerState, pending_id: str) -> None:
    """Record the timeout of an unresolved pending transfer (id ``<pending>:expire``)."""
    pending = state.pendings[pending_id]
    expire_id = f"{pending_id}:expire"
    # No request asked for it: an empty fields hash, which no request's digest equals (a request
    # reusing the id is refused as different fields).
    _finish(state, expire_id, pending_id, pending, TransferKind.EXPIRE, "")
    state._set(state.known, expire_id, ("", Result.OK))


def _finish(
    state: LedgerState,
    id_: str,
    pending_id: str,
    pending: PendingRecord,
    kind: TransferKind,
    fields_hash: str,
) -> None:
    """Resolve ``pending`` by ``kind``: its row (id ``id_``, ``fields_hash`` of the resolving
    request) moves the pending amount, and a void or an expiry gives its usage back."""
    _move(state, pending.debit_account, pending.credit_account, pending.amount, kind)
    if kind is not TransferKind.POST and pending.limits:
        _use(state, pending.limits, -1)
    state._set(state.pendings, pending_id, pending.resolved_by(kind))
    state.rows.append(
        {
            "id": id_,
            "kind": str(kind),
            "debit_account": pending.debit_account,
            "credit_account": pending.credit_account,
            "amount": pending.amount,
            "pending_id": pending_id,
            "expires_at_us": None,
            "at_us": state.now_us,
            "code": pending.code,
            "agreement_id": pending.agreement_id,
            "link_hash": pending.link_hash,
            "limits": None,
            "fields_hash": fields_hash,
        }
    )


def _move(state: LedgerState, debit_id: str, credit_id: str, amount: int, kind: TransferKind) -> None:
    """Move ``amount`` between the two accounts as ``kind`` does, journaled once."""
    _shift(state.balances[debit_id], state.balances[credit_id], amount, kind)
    state._moves.append((debit_id, credit_id, amount, kind))


def _shift(debit: Balance, credit: Balance, amount: int, kind: TransferKind) -> None:
    """Add ``kind``'s effect of ``amount`` to the two balances (a negative amount takes it back).
    TigerBeetle, "Two-phase transfers": a pending transfer adds to the pending debits and credits;
    a post moves them to posted, a void or a timeout takes them away; a single transfer posts."""
    if kind is TransferKind.SINGLE:
        debit.debits_posted += amount
        credit.credits_posted += amount
    elif kind is TransferKind.PENDING:
        debit.debits_pending += amount
        credit.credits_pending += amount
    else:
        debit.debits_pending -= amount
        credit.credits_pending -= amount
        if kind is TransferKind.POST:
            debit.debits_posted += amount
            credit.credits_posted += amount


def _use(state: LedgerState, limits: tuple[UsageLimit, ...], sign: int) -> None:
    """Charge (``sign`` 1) or give back (-1) the limits' amounts on their counters, journaled once."""
    _add_usage(state.usage, limits, sign)
    state._uses.append((limits, sign))


def _add_usage(usage: dict[str, int], limits: tuple[UsageLimit, ...], sign: int) -> None:
    for limit in limits:
        usage[limit.key] = usage.get(limit.key, 0) + sign * limit.amount


def _row(transfer: Transfer, kind: TransferKind, expires_at_us: int | None, now_us: int) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "kind": str(kind),
        "debit_account": transfer.debit_account,
        "credit_account": transfer.credit_account,
        "amount": transfer.amount,
        "pending_id": transfer.pending_id,
        "expires_at_us": expires_at_us,
        "at_us": now_us,
        "code": transfer.code,
        "agreement_id": transfer.agreement_id,
        "link_hash": transfer.link_hash,
        "limits": _limits_json(transfer.limits) if transfer.limits else None,
        "fields_hash": transfer.fields_hash,
    }


def _limits_json(limits: tuple[UsageLimit, ...]) -> str:
    """``json.dumps([[key, cap, amount], ...])``, the same text, built without the encoder object
    that ``json.dumps`` makes for every list. A key is escaped by ``encode_basestring_ascii``,
    which is all ``json.dumps`` does with a str under its defaults (``ensure_ascii=True``)."""
    return "[" + ", ".join([f"[{_json_str(u.key)}, {u.cap:d}, {u.amount:d}]" for u in limits]) + "]"
