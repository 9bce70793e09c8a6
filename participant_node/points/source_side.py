"""The source node's half of an interchange transfer: it reserves, decides, and tells the destination.

A member asks node A to convert points to partner B. A checks the agreement, the member's link and
consent, prices the transfer, and in one transaction reserves (pending debit of the points and the
fee, linked, with the caps checked now and a timeout) and records the transfer in state "reserved".
A is the coordinator of this two-phase commit (presumed abort): when B answers "reserved", A posts
its legs and queues "post" in the outbox; when B refuses, or A's reservation timed out first, A
voids and (if B may hold a reservation) queues "void". B never decides alone: it asks A
(``decisions``) about reservations that stay open. Every message can be lost, repeated or
reordered: each is idempotent by transfer id, and each is resent until answered.

The reserve message is not queued in the outbox: a source row stays "reserved" exactly until B's
answer or the timeout decides it, so the source's reserved rows are the reserve messages waiting
for an answer (``awaiting_answer``), and the delivery pump resends those older than its resend
delay. A queued row would duplicate that state at the cost of an insert and a delete (and their
index entries) per transfer in the transactions that bound the node's throughput.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from audit.lineage_event import EventType
from participant_node.points import link_store, point_lots
from participant_node.points.agreement_book import AgreementBook
from participant_node.points.audit_trail import RecordedTransfer, record_transfers
from participant_node.points.bulk_statements import insert_rows
from participant_node.points.interchange_rows import (
    FEE_ACCOUNT,
    ROWS,
    State,
    caps,
    clearing,
    enqueue,
    fields_hash,
    load_rows,
    member_account,
    set_state,
)
from participant_node.points.ledger import Ledger, LedgerTx
from participant_node.points.ledger_rules import Result, Transfer, TransferKind
from participant_node.points.linking import link_hash
from participant_node.points.member_directory import MemberDirectory, PooledDirectory
from participant_node.points.reserve_message import Reserved, reserve_messages
from participant_node.points.wire import (
    DecisionReply,
    InboundStatus,
    ItemResult,
    ReserveReply,
    ReserveRequest,
    TransferDecision,
    check_transfer_id,
)
from policies.interchange_agreement import AgreementError

__all__ = ["SourceSide", "TransferReceipt", "TransferRequest"]

_EXPIRED = "exceeds_unexpired_points"  # the member's balance counts points whose expiry passed


@dataclass(frozen=True)
class TransferRequest:
    transfer_id: str
    member_id: str
    peer: str
    points: int


@dataclass(frozen=True)
class TransferReceipt:
    """What the member is told: reserved (in flight), posted, voided or refused, and the amounts."""

    transfer_id: str
    peer: str
    state: str
    points: int = 0
    fee: int = 0
    credited: int = 0
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies every value, a cost paid per receipt.
        return {
            "transfer_id": self.transfer_id,
            "peer": self.peer,
            "state": self.state,
            "points": self.points,
            "fee": self.fee,
            "credited": self.credited,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _Priced:
    request: TransferRequest
    agreement_id: str
    token: str
    points: int
    fee: int
    credited: int
    timeout_us: int
    caps: tuple[Any, ...]


def _legs(p: _Priced) -> list[Transfer]:
    debit = Transfer(
        f"{p.request.transfer_id}:debit",
        member_account(p.request.member_id),
        clearing(p.request.peer),
        p.points,
        kind=TransferKind.PENDING,
        timeout_us=p.timeout_us,
        code="interchange_out",
        agreement_id=p.agreement_id,
        link_hash=link_hash(p.token),
        limits=p.caps,
        linked=p.fee > 0,
    )
    if not p.fee:
        return [debit]
    fee = Transfer(
        f"{p.request.transfer_id}:fee",
        member_account(p.request.member_id),
        FEE_ACCOUNT,
        p.fee,
        kind=TransferKind.PENDING,
        timeout_us=p.timeout_us,
        code="interchange_fee",
        agreement_id=p.agreement_id,
    )
    return [debit, fee]


def _resolution(row: Any, kind: TransferKind) -> list[Transfer]:
    ids = [f"{row.key}:debit"] + ([f"{row.key}:fee"] if row.fee else [])
    return [
        Transfer(f"{i}:{kind}", kind=kind, pending_id=i, linked=n < len(ids) - 1) for n, i in enumerate(ids)
    ]


class _Links:
    """The batch's members' links and consents, looked up once per batch."""

    def __init__(
        self, tx: LedgerTx, directory: MemberDirectory | PooledDirectory | None, members: list[str]
    ) -> None:
        self._tx, self._directory, self._members = tx, directory, members
        self._tokens: dict[tuple[str, int], dict[str, str]] = {}
        self._consented: dict[str, frozenset[str]] = {}

    def token(self, member_id: str, agreement_id: str, epoch: int) -> str | None:
        key = (agreement_id, epoch)
        if key not in self._tokens:
            self._tokens[key] = link_store.tokens_of(self._tx.conn, self._members, agreement_id, epoch)
        return self._tokens[key].get(member_id)

    def consented(self, peer: str, member_id: str) -> bool:
        if self._directory is None:
            return True
        if peer not in self._consented:
            self._consented[peer] = self._directory.consented(peer)
        return member_id in self._consented[peer]

    def revoke(self, member_id: str, agreement_id: str) -> None:
        link_store.revoke_members(self._tx.conn, [member_id], agreement_id, at_us=self._tx.now_us)


class SourceSide:
    def __init__(
        self,
        partner: str,
        ledger: Ledger,
        book: AgreementBook,
        directory: MemberDirectory | PooledDirectory | None,
    ) -> None:
        self.partner, self.ledger, self.book, self.directory = partner, ledger, book, directory

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.ledger.now_us() / 1_000_000, UTC)

    def _price(self, request: TransferRequest, at: datetime, links: _Links) -> _Priced:
        check_transfer_id(request.transfer_id)
        agreement = self.book.for_peer(request.peer, at)
        terms = agreement.terms_for(self.partner, request.peer)
        quote = terms.quote(request.points)
        token = links.token(request.member_id, agreement.agreement_id, agreement.epoch)
        if token is None:
            raise AgreementError(f"the member is not linked with {request.peer}", rule="not_linked")
        if not links.consented(request.peer, request.member_id):
            # Withdrawal or erasure unlinks (PIPL Art. 15, 47): the link goes, the transfer is refused.
            links.revoke(request.member_id, agreement.agreement_id)
            raise AgreementError(
                "the member has no consent to interchange with this partner", rule="no_consent"
            )
        now = self.ledger.now_us()
        limits = caps(terms, agreement, member_account(request.member_id), quote.points, now)
        timeout_us = int(agreement.transfer_timeout_s * 1_000_000)
        return _Priced(
            request,
            agreement.agreement_id,
            token,
            quote.points,
            quote.fee,
            quote.credited,
            timeout_us,
            limits,
        )

    def reserve(
        self, requests: Sequence[TransferRequest]
    ) -> tuple[list[TransferReceipt], dict[str, ReserveRequest]]:
        """Reserve every request in one transaction; returns receipts and the reserve message per
        peer for the transfers reserved (built from the rows written, not read back)."""
        at = self._now()
        receipts: dict[str, TransferReceipt] = {}
        to_send: list[Reserved] = []
        with self.ledger.transaction() as tx:
            existing = load_rows(tx.conn, [r.transfer_id for r in requests], lock=True)
            links = _Links(tx, self.directory, [r.member_id for r in requests])
            priced: list[_Priced] = []
            seen: set[str] = set()
            for request in requests:
                if request.transfer_id in seen:
                    continue
                seen.add(request.transfer_id)
                receipt = self._existing(existing.get(request.transfer_id), request)
                if receipt is not None:
                    receipts[request.transfer_id] = receipt
                    continue
                try:
                    priced.append(self._price(request, at, links))
                except (AgreementError, ValueError) as err:
                    rule = getattr(err, "rule", "invalid_request")
                    receipts[request.transfer_id] = TransferReceipt(
                        request.transfer_id, request.peer, State.REFUSED, request.points, reason=rule
                    )
            reserved, taken = self._reserve_priced(tx, priced)
            for p, receipt in zip(priced, reserved, strict=True):
                receipts[p.request.transfer_id] = receipt
                if receipt.state == State.RESERVED:
                    to_send.append(_reserved(p, tx.now_us))
        held = {r.key: taken.get(r.key) or [] for r in to_send}
        return [receipts[r.transfer_id] for r in requests], reserve_messages(self.book, to_send, held)

    def _existing(self, row: Any, request: TransferRequest) -> TransferReceipt | None:
        if row is None:
            return None
        if row.fields_hash != fields_hash(request.member_id, request.peer, request.points):
            return TransferReceipt(
                request.transfer_id, request.peer, State.REFUSED, reason="transfer_id_reused"
            )
        return _receipt(row)

    def _reserve_priced(
        self, tx: LedgerTx, priced: list[_Priced]
    ) -> tuple[list[TransferReceipt], dict[str, list[point_lots.Slice] | None]]:
        """Receipts of ``priced``, in order, and the slices of lots each reservation took."""
        # The points moved (and the fee) come out of the member's unexpired lots, earliest first.
        taken = point_lots.take(
            tx,
            [(p.request.transfer_id, member_account(p.request.member_id), p.points + p.fee) for p in priced],
        )
        # Each priced transfer's legs, built once (None: its points had expired).
        legs = [_legs(p) if taken[p.request.transfer_id] is not None else None for p in priced]
        applied = iter(tx.apply([leg for own in legs if own is not None for leg in own]))
        rows, receipts, refused = [], [], []
        recorded: dict[str, list[RecordedTransfer]] = {}
        for p, own in zip(priced, legs, strict=True):
            results = [next(applied) for _ in own] if own is not None else []
            failed = next(
                (o.result for o in results if not o.ok and o.result != Result.LINKED_EVENT_FAILED),
                None if results else _EXPIRED,
            )
            state = State.RESERVED if failed is None else State.REFUSED
            if failed is not None:
                refused.append(p.request.transfer_id)
            rows.append(self._row(tx.now_us, p, state, None if failed is None else str(failed)))
            receipts.append(
                TransferReceipt(
                    p.request.transfer_id,
                    p.request.peer,
                    state,
                    p.points,
                    p.fee,
                    p.credited,
                    None if failed is None else str(failed),
                )
            )
            if state == State.RESERVED:
                recorded.setdefault(p.request.peer, []).append(
                    RecordedTransfer(
                        p.request.transfer_id, rows[-1]["link_hash"], p.points, p.credited, p.fee
                    )
                )
        for peer, transfers in recorded.items():
            record_transfers(
                tx,
                EventType.POINTS_RESERVED,
                partner=self.partner,
                peer=peer,
                side="source",
                transfers=transfers,
            )
        point_lots.restore(tx.conn, refused)
        if rows:  # a reserved row is its own pending reserve message (see the module docstring)
            insert_rows(tx.conn, ROWS, rows)
        return receipts, taken

    def _row(self, now: int, p: _Priced, state: State, reason: str | None) -> dict[str, Any]:
        r = p.request
        return {
            "key": r.transfer_id,
            "transfer_id": r.transfer_id,
            "role": "source",
            "peer": r.peer,
            "agreement_id": p.agreement_id,
            "member_account": member_account(r.member_id),
            "link_token": p.token,
            "link_hash": link_hash(p.token),
            "points": p.points,
            "credited": p.credited,
            "fee": p.fee,
            "fields_hash": fields_hash(r.member_id, r.peer, r.points),
            "state": str(state),
            "reason": reason,
            "created_at_us": now,
            "updated_at_us": now,
            "decided_at_us": None,
        }

    def awaiting_answer(self, *, reserved_by_us: int, limit: int) -> dict[str, list[str]]:
        """The transfers whose reserve message waits for the peer's answer, reserved at or before
        ``reserved_by_us``, oldest first (at most ``limit``): peer -> transfer ids. A reserved row's
        ``updated_at_us`` is its reservation's moment (only a decision updates a source row), and the
        (state, role, updated_at_us) index holds these rows in that order."""
        query = (
            select(ROWS.c.peer, ROWS.c.key)
            .where(
                ROWS.c.role == "source",
                ROWS.c.state == State.RESERVED,
                ROWS.c.updated_at_us <= reserved_by_us,
            )
            .order_by(ROWS.c.updated_at_us)
            .limit(limit)
        )
        found: dict[str, list[str]] = {}
        with self.ledger.reading() as conn:
            for row in conn.execute(query):
                found.setdefault(row.peer, []).append(row.key)
        return found

    def count_awaiting_answer(self) -> int:
        """How many reserve messages wait for the peer's answer (every source reservation open)."""
        query = (
            select(func.count())
            .select_from(ROWS)
            .where(ROWS.c.role == "source", ROWS.c.state == State.RESERVED)
        )
        with self.ledger.reading() as conn:
            return int(conn.execute(query).scalar_one())

    def reserve_messages(self, keys: Sequence[str]) -> dict[str, ReserveRequest]:
        """The reserve message per peer for those ``keys`` still awaiting the peer's answer."""
        with self.ledger.reading() as conn:
            rows = [r for r in load_rows(conn, list(keys)).values() if r.state == State.RESERVED]
            held = point_lots.held(conn, [r.key for r in rows])
        return reserve_messages(self.book, rows, held)

    def apply_replies(
        self, peer: str, reply: ReserveReply
    ) -> tuple[list[TransferReceipt], tuple[TransferDecision, ...]]:
        """Decide every transfer the peer answered: post when it reserved, void otherwise.
        Returns the answered transfers' receipts and the posts to send the peer now."""
        with self.ledger.transaction() as tx:
            keys = [r.transfer_id for r in reply.results]
            rows = load_rows(tx.conn, keys, lock=True)
            answered = {
                r.transfer_id: r
                for r in reply.results
                if r.transfer_id in rows
                and rows[r.transfer_id].state == State.RESERVED
                and rows[r.transfer_id].peer == peer
            }
            ok = (InboundStatus.RESERVED, InboundStatus.POSTED)
            post = [rows[k] for k, r in answered.items() if r.status in ok]
            void = [rows[k] for k, r in answered.items() if r.status not in ok]
            reasons = {k: f"peer_{r.reason or r.status}" for k, r in answered.items()}
            posted, voided = self._decide(tx, post, void, reasons, notify_void=False)
        posts = tuple(
            TransferDecision.model_construct(transfer_id=r.key, decided_at_us=tx.now_us) for r in posted
        )
        # The receipts from the rows read and the decisions just written (not read back): a row
        # this transaction did not decide keeps the state it was read in.
        decided = {r.key: (State.POSTED, r.reason) for r in posted} | {
            k: (State.VOIDED, reason) for k, reason in voided.items()
        }
        return [_receipt(rows[k], decided.get(k)) for k in keys if k in rows], posts

    def _decide(
        self, tx: LedgerTx, post: list[Any], void: list[Any], reasons: dict[str, str], *, notify_void: bool
    ) -> tuple[list[Any], dict[str, str]]:
        """Post ``post`` and void ``void`` (and what timed out first); returns the rows posted and
        the reason of each transfer voided."""
        resolutions = [_resolution(row, TransferKind.POST) for row in post]  # built once per row
        outcomes = iter(tx.apply([leg for legs in resolutions for leg in legs]))
        posted: list[Any] = []
        late: list[Any] = []
        for row, legs in zip(post, resolutions, strict=True):
            results = [next(outcomes) for _ in legs]
            (posted if all(o.ok for o in results) else late).append(row)
        if late:  # our reservation timed out before the peer's answer: the decision is void
            tx.expire_due()
        tx.apply([leg for row in void for leg in _resolution(row, TransferKind.VOID)])
        now = tx.now_us
        set_state(tx.conn, [r.key for r in posted], State.POSTED, now, decided_at_us=now)
        point_lots.release(tx.conn, [r.key for r in posted])
        point_lots.restore(tx.conn, [r.key for r in late + void])
        self._events(tx, EventType.POINTS_POSTED, posted)
        voided = late + void
        by_reason: dict[str, list[str]] = {}
        for row in voided:
            by_reason.setdefault(reasons.get(row.key, "timeout")[:64], []).append(row.key)
        self._events(tx, EventType.POINTS_VOIDED, voided)
        for reason, group in by_reason.items():
            set_state(tx.conn, group, State.VOIDED, now, decided_at_us=now, reason=reason)
        voided_reasons = {key: reason for reason, group in by_reason.items() for key in group}
        for peer in {r.peer for r in posted + voided}:
            enqueue(tx.conn, [r.key for r in posted if r.peer == peer], peer, "post", now)
            notify = late + (void if notify_void else [])
            enqueue(tx.conn, [r.key for r in notify if r.peer == peer], peer, "void", now)
        return posted, voided_reasons

    def _events(self, tx: LedgerTx, event_type: EventType, rows: list[Any]) -> None:
        """The lineage event of ``rows``' decision, one per peer."""
        by_peer: dict[str, list[RecordedTransfer]] = {}
        for row in rows:
            recorded = RecordedTransfer(row.key, row.link_hash, row.points, row.credited)
            by_peer.setdefault(row.peer, []).append(recorded)
        for peer, transfers in by_peer.items():
            record_transfers(
                tx, event_type, partner=self.partner, peer=peer, side="source", transfers=transfers
            )

    def void_expired(self) -> int:
        """Recovery: void every reservation whose timeout passed without the peer's answer."""
        with self.ledger.transaction() as tx:
            tx.expire_due()
            # Only rows older than the shortest timeout can have timed out: the periodic pass reads
            # none of the transfers in flight (rows read are then checked against their own agreement).
            shortest_us = int(min((a.transfer_timeout_s for a in self.book.all()), default=0) * 1_000_000)
            query = select(ROWS).where(
                ROWS.c.role == "source",
                ROWS.c.state == State.RESERVED,
                ROWS.c.created_at_us <= tx.now_us - shortest_us,
            )
            rows = list(tx.conn.execute(query))
            expired = [r for r in rows if self._timed_out(r, tx.now_us)]
            self._decide(tx, [], expired, {r.key: "timeout" for r in expired}, notify_void=True)
        return len(expired)

    def _timed_out(self, row: Any, now_us: int) -> bool:
        agreement = self.book.by_id(row.agreement_id)
        return now_us >= row.created_at_us + int(agreement.transfer_timeout_s * 1_000_000)

    def decisions(self, peer: str, transfer_ids: Sequence[str]) -> DecisionReply:
        """What this node decided for transfers it sent ``peer`` (asked by the peer's recovery)."""
        with self.ledger.reading() as conn:
            rows = load_rows(conn, list(transfer_ids))
        results, times = [], []
        for transfer_id in transfer_ids:
            row = rows.get(transfer_id)
            if row is None or row.peer != peer or row.role != "source":
                results.append(ItemResult(transfer_id=transfer_id, status=InboundStatus.UNKNOWN))
                times.append(0)
                continue
            results.append(ItemResult(transfer_id=transfer_id, status=InboundStatus(row.state)))
            times.append(row.decided_at_us or 0)
        return DecisionReply(decisions=tuple(results), decided_at_us=tuple(times))

    def receipts(self, keys: Sequence[str]) -> list[TransferReceipt]:
        with self.ledger.reading() as conn:
            rows = load_rows(conn, list(keys))
        return [_receipt(rows[k]) for k in keys if k in rows]


def _reserved(p: _Priced, now_us: int) -> Reserved:
    r = p.request
    return Reserved(r.transfer_id, r.peer, p.agreement_id, p.token, p.points, p.credited, now_us)


def _receipt(row: Any, decided: tuple[str, str | None] | None = None) -> TransferReceipt:
    """The receipt of a transfer row, with the (state, reason) just ``decided`` if it was."""
    state, reason = decided or (row.state, row.reason)
    return TransferReceipt(row.transfer_id, row.peer, str(state), row.points, row.fee, row.credited, reason)
