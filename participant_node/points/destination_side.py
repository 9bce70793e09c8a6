"""The destination node's half of an interchange transfer: reserve the credit, then post or void it.

B checks each reserve against its own copy of the signed agreement (same hash, in force, the peer
is its party, the direction exists), the link token (known and active), the member's consent
naming the source partner (PIPL Art. 23), the price (B recomputes the credit) and its own caps,
then reserves a pending credit from the peer's clearing account. Every message is idempotent by
the source's transfer id: a repeat with the same fields gets the first answer, with other fields
``conflict``. A void for a transfer B never saw leaves a tombstone, so a reserve that arrives late
(reordered behind its void) is refused. B never times out alone: open reservations are resolved by
asking the source for its decision (``in_doubt`` then ``apply_decisions``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import select

from audit.lineage_event import EventType
from participant_node.points import link_store, point_lots
from participant_node.points.agreement_book import AgreementBook
from participant_node.points.audit_trail import RecordedTransfer, record_transfers
from participant_node.points.bulk_statements import insert_rows
from participant_node.points.interchange_rows import (
    ROWS,
    State,
    caps,
    clearing,
    fields_hash,
    inbound_key,
    load_rows,
    member_account,
    set_state,
)
from participant_node.points.ledger import Ledger, LedgerTx
from participant_node.points.ledger_rules import Transfer, TransferKind
from participant_node.points.linking import link_hash
from participant_node.points.member_directory import MemberDirectory, PooledDirectory
from participant_node.points.wire import (
    DecisionReply,
    InboundStatus,
    ItemResult,
    ReserveItem,
    ReserveReply,
    ReserveRequest,
    ResolveAction,
    ResolveReply,
    ResolveRequest,
)
from policies.interchange_agreement import AgreementError, ConversionTerms, InterchangeAgreement
from policies.loyalty_programme import add_months

__all__ = ["DestinationSide"]


class _Fresh(NamedTuple):
    """A reserve item this node has not seen, with what its rows need (each computed once)."""

    item: ReserveItem
    key: str
    account: str  # the member's ledger account
    link_hash: str


_ANSWER = {
    State.RESERVED: InboundStatus.RESERVED,
    State.POSTED: InboundStatus.RESERVED,
    State.VOIDED: InboundStatus.VOIDED,
    State.REFUSED: InboundStatus.REFUSED,
}


class DestinationSide:
    def __init__(
        self,
        partner: str,
        ledger: Ledger,
        book: AgreementBook,
        directory: MemberDirectory | PooledDirectory | None,
    ) -> None:
        self.partner, self.ledger, self.book, self.directory = partner, ledger, book, directory

    def _agreement(self, peer: str, request: ReserveRequest) -> InterchangeAgreement:
        agreement = self.book.by_id(request.agreement_id)
        if (
            self.book.content_hash(request.agreement_id) != request.agreement_hash
            or agreement.epoch != request.epoch
        ):
            raise AgreementError(
                "the peer's agreement is not the version this node signed", rule="agreement_mismatch"
            )
        if agreement.peer_of(self.partner) != peer:
            raise AgreementError("the peer is not a party to this agreement", rule="not_a_party")
        agreement.check_in_force(datetime.fromtimestamp(self.ledger.now_us() / 1_000_000, UTC))
        return agreement

    def reserve(self, peer: str, request: ReserveRequest) -> ReserveReply:
        try:
            agreement = self._agreement(peer, request)
            terms = agreement.terms_for(peer, self.partner)
        except AgreementError as err:
            return ReserveReply(results=tuple(_refused(i.transfer_id, err.rule) for i in request.items))
        consented = self.directory.consented(peer) if self.directory is not None else None
        with self.ledger.transaction() as tx:
            members = link_store.member_of(
                tx.conn, [i.link_token for i in request.items], agreement.agreement_id, agreement.epoch
            )
            if consented is not None:
                gone = {t: m for t, m in members.items() if m not in consented}
                link_store.revoke_members(tx.conn, gone.values(), agreement.agreement_id, at_us=tx.now_us)
                members = {t: m for t, m in members.items() if t not in gone}
            keys = [inbound_key(peer, i.transfer_id) for i in request.items]
            existing = load_rows(tx.conn, keys, lock=True)
            results: dict[str, ItemResult] = {}
            fresh: list[_Fresh] = []
            seen: set[str] = set()
            for item, key in zip(request.items, keys, strict=True):
                if key in seen:
                    continue
                seen.add(key)
                answer = self._check(item, existing.get(key), members, terms)
                if answer is not None:
                    results[key] = answer
                else:
                    member = members[item.link_token]
                    fresh.append(_Fresh(item, key, member_account(member), link_hash(item.link_token)))
            results |= self._reserve_fresh(tx, peer, agreement, terms, fresh)
        return ReserveReply(results=tuple(results[k] for k in dict.fromkeys(keys)))

    def _check(
        self, item: ReserveItem, row: Any, members: dict[str, str], terms: ConversionTerms
    ) -> ItemResult | None:
        if row is not None:
            if row.fields_hash == "":  # tombstone: voided before this reserve arrived
                return _result(item.transfer_id, InboundStatus.VOIDED)
            if row.fields_hash != _item_hash(item):
                return _result(item.transfer_id, InboundStatus.CONFLICT)
            return _result(item.transfer_id, _ANSWER[State(row.state)], row.reason)
        if item.link_token not in members:
            return _refused(item.transfer_id, "unknown_link_token")
        try:
            quote = terms.quote(item.points)
        except AgreementError as err:
            return _refused(item.transfer_id, err.rule)
        if quote.credited != item.credited:
            return _refused(item.transfer_id, "rate_mismatch")
        if item.expiry and sum(e.points for e in item.expiry) != item.credited:
            return _refused(item.transfer_id, "expiry_mismatch")
        return None

    def _reserve_fresh(
        self,
        tx: LedgerTx,
        peer: str,
        agreement: InterchangeAgreement,
        terms: ConversionTerms,
        fresh: list[_Fresh],
    ) -> dict[str, ItemResult]:
        legs = [
            Transfer(
                f"{f.key}:credit",
                clearing(peer),
                f.account,
                f.item.credited,
                kind=TransferKind.PENDING,
                code="interchange_in",
                agreement_id=agreement.agreement_id,
                link_hash=f.link_hash,
                limits=caps(terms, agreement, f.item.link_token, f.item.points, tx.now_us),
            )
            for f in fresh
        ]
        results: dict[str, ItemResult] = {}
        rows, holds, recorded = [], [], []
        untracked_until = point_lots.untracked_expiry(tx.now_us)  # one moment for the whole batch
        # Unseen ids: a credit leg is written only here, in the transaction that writes the
        # interchange row of its key, and these keys had no row when ``reserve`` read them (a
        # concurrent writer of the same key fails on the row's unique key, as it did before).
        for f, outcome in zip(fresh, tx.apply(legs, unseen=True), strict=True):
            item = f.item
            state = State.RESERVED if outcome.ok else State.REFUSED
            reason = None if outcome.ok else str(outcome.result)
            rows.append(_row(f, peer, agreement.agreement_id, state, reason, tx.now_us))
            results[f.key] = _result(item.transfer_id, _ANSWER[state], reason)
            if outcome.ok:
                holds.append((f.key, f.account, _credit_expiry(item, untracked_until)))
                recorded.append(RecordedTransfer(item.transfer_id, f.link_hash, item.points, item.credited))
        self._event(tx, EventType.POINTS_RESERVED, peer, recorded)
        point_lots.hold(tx.conn, holds)
        insert_rows(tx.conn, ROWS, rows)
        return results

    def _event(self, tx: LedgerTx, kind: EventType, peer: str, transfers: list[RecordedTransfer]) -> None:
        if transfers:
            record_transfers(
                tx, kind, partner=self.partner, peer=peer, side="destination", transfers=transfers
            )

    def resolve(self, peer: str, request: ResolveRequest) -> ResolveReply:
        """Apply the source's decisions (post or void) to our reservations."""
        with self.ledger.transaction() as tx:
            results = self._resolve(
                tx, peer, request.action, {d.transfer_id: d.decided_at_us for d in request.items}
            )
        return ResolveReply(results=tuple(results))

    def _resolve(
        self, tx: LedgerTx, peer: str, action: ResolveAction, decided: dict[str, int]
    ) -> list[ItemResult]:
        keys = {inbound_key(peer, t): t for t in decided}
        rows = load_rows(tx.conn, list(keys), lock=True)
        kind = TransferKind.POST if action == ResolveAction.POST else TransferKind.VOID
        target = State.POSTED if action == ResolveAction.POST else State.VOIDED
        todo = [rows[k] for k in keys if k in rows and rows[k].state == State.RESERVED]
        outcomes = tx.apply(
            [Transfer(f"{r.key}:credit:{kind}", kind=kind, pending_id=f"{r.key}:credit") for r in todo]
        )
        done = [r for r, o in zip(todo, outcomes, strict=True) if o.ok]
        by_time: dict[int, list[str]] = {}
        for row in done:
            by_time.setdefault(decided[keys[row.key]], []).append(row.key)
        for at, group in by_time.items():
            set_state(tx.conn, group, target, tx.now_us, decided_at_us=at)
        self._settle_lots(tx, [r for r in done], target)
        event = EventType.POINTS_POSTED if target == State.POSTED else EventType.POINTS_VOIDED
        recorded = [RecordedTransfer(keys[r.key], r.link_hash, r.points, r.credited) for r in done]
        self._event(tx, event, peer, recorded)
        tombstones = [k for k in keys if k not in rows and action == ResolveAction.VOID]
        if tombstones:
            tx.conn.execute(ROWS.insert(), [_tombstone(k, keys[k], peer, tx.now_us) for k in tombstones])
        # Each key's state now, from what this transaction read and wrote (no row is read twice).
        states: dict[str, str] = {k: r.state for k, r in rows.items()}
        states |= {r.key: target for r in done} | {k: State.VOIDED for k in tombstones}
        return [_resolution_answer(states.get(k), t, target) for k, t in keys.items()]

    def _settle_lots(self, tx: LedgerTx, rows: list[Any], target: State) -> None:
        """A posted credit's points join the member's lots with the expiry they were reserved with,
        or the agreement's own rule (months from now); a voided credit's hold goes."""
        keys = [r.key for r in rows]
        months = {a: self.book.by_id(a).moved_points_expiry_months for a in {r.agreement_id for r in rows}}
        own_rule = [r for r in rows if target == State.POSTED and months[r.agreement_id]]
        own_keys = {r.key for r in own_rule}
        point_lots.release(tx.conn, list(own_keys))
        if target == State.POSTED:
            point_lots.credit_held(tx.conn, [k for k in keys if k not in own_keys])
        else:
            point_lots.release(tx.conn, keys)
        now = datetime.fromtimestamp(tx.now_us / 1_000_000, UTC)
        until = {a: int(add_months(now, m).timestamp() * 1e6) for a, m in months.items() if m}
        point_lots.add_to_lots(
            tx.conn,
            [(r.member_account, point_lots.Slice(r.credited, until[r.agreement_id])) for r in own_rule],
        )

    def in_doubt(self, *, older_than_s: float) -> dict[str, list[str]]:
        """Reservations still open after ``older_than_s``: peer -> transfer ids to ask the source about."""
        cutoff = self.ledger.now_us() - int(older_than_s * 1_000_000)
        query = select(ROWS.c.peer, ROWS.c.transfer_id).where(
            ROWS.c.role == "destination", ROWS.c.state == State.RESERVED, ROWS.c.updated_at_us <= cutoff
        )
        found: dict[str, list[str]] = {}
        with self.ledger.reading() as conn:
            for row in conn.execute(query):
                found.setdefault(row.peer, []).append(row.transfer_id)
        return found

    def apply_decisions(self, peer: str, reply: DecisionReply) -> int:
        """Post what the source posted; void what it voided, refused or never knew; leave the undecided."""
        posts, voids = {}, {}
        for item, at in zip(reply.decisions, reply.decided_at_us, strict=True):
            if item.status == InboundStatus.POSTED:
                posts[item.transfer_id] = at
            elif item.status in (InboundStatus.VOIDED, InboundStatus.REFUSED, InboundStatus.UNKNOWN):
                voids[item.transfer_id] = at
        with self.ledger.transaction() as tx:
            if posts:
                self._resolve(tx, peer, ResolveAction.POST, posts)
            if voids:
                self._resolve(tx, peer, ResolveAction.VOID, voids)
        return len(posts) + len(voids)


def _item_hash(item: ReserveItem) -> str:
    expiry = [(e.points, e.expires_at_us) for e in item.expiry]
    return fields_hash(item.link_token, item.points, item.credited, *expiry)


def _credit_expiry(item: ReserveItem, untracked_until: int) -> list[point_lots.Slice]:
    """The expiry the credit was sent with, or (none sent) the untracked default from now."""
    if item.expiry:
        return [point_lots.Slice(e.points, e.expires_at_us) for e in item.expiry]
    return [point_lots.Slice(item.credited, untracked_until)]


def _result(transfer_id: str, status: InboundStatus, reason: str | None = None) -> ItemResult:
    return ItemResult(transfer_id=transfer_id, status=status, reason=reason)


def _refused(transfer_id: str, rule: str) -> ItemResult:
    return ItemResult(transfer_id=transfer_id, status=InboundStatus.REFUSED, reason=rule[:48])


def _row(
    fresh: _Fresh, peer: str, agreement_id: str, state: State, reason: str | None, now: int
) -> dict[str, Any]:
    item = fresh.item
    return {
        "key": fresh.key,
        "transfer_id": item.transfer_id,
        "role": "destination",
        "peer": peer,
        "agreement_id": agreement_id,
        "member_account": fresh.account,
        "link_token": item.link_token,
        "link_hash": fresh.link_hash,
        "points": item.points,
        "credited": item.credited,
        "fee": 0,
        "fields_hash": _item_hash(item),
        "state": str(state),
        "reason": reason,
        "created_at_us": now,
        "updated_at_us": now,
        "decided_at_us": None,
    }


def _tombstone(key: str, transfer_id: str, peer: str, now: int) -> dict[str, Any]:
    return {
        "key": key,
        "transfer_id": transfer_id,
        "role": "destination",
        "peer": peer,
        "agreement_id": "",
        "member_account": "",
        "link_token": "",
        "link_hash": "",
        "points": 0,
        "credited": 0,
        "fee": 0,
        "fields_hash": "",
        "state": str(State.VOIDED),
        "reason": "voided_before_reserve",
        "created_at_us": now,
        "updated_at_us": now,
        "decided_at_us": None,
    }


def _resolution_answer(state: str | None, transfer_id: str, target: State) -> ItemResult:
    if state is None:
        return _result(transfer_id, InboundStatus.UNKNOWN)
    if state == target or (target == State.VOIDED and state == State.REFUSED):
        return _result(transfer_id, InboundStatus(target))
    return _result(transfer_id, InboundStatus.CONFLICT)
