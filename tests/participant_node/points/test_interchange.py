"""Two real nodes over mutual TLS on loopback (uvicorn in threads): linking, transfers, consent,
settlement, audit, and a capture of everything the nodes send each other and the coordinator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sqlalchemy import select

from audit.audit_log import AuditLog
from audit.lineage_event import EventType
from loyalfed.points_federation import NodePair, prepare_synthetic_pair
from participant_node.consent import ConsentStore, store_path
from participant_node.points import point_lots
from participant_node.points.errors import PeerError
from participant_node.points.fault_plan import RecordingTransport
from participant_node.points.interchange_rows import OUTBOX, ROWS, enqueue
from participant_node.points.service import PointsService
from participant_node.points.source_side import TransferRequest
from participant_node.points.wire import POINTS_WIRE_VERSION, ReserveItem, ReserveRequest
from policies.purpose import Purpose
from tests.participant_node.points.served_nodes import serving

A, B = "freshmart", "careplus"
WIDE = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))


@dataclass
class Nodes:
    pair: NodePair
    services: dict[str, PointsService]
    captured: list[bytes]
    root: Path


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    root = tmp_path_factory.mktemp("points-nodes")
    pair = prepare_synthetic_pair(root, members=160, shared=120, min_link_set_size=20)
    captured: list[bytes] = []

    def record(_peer: str, transport: httpx.BaseTransport) -> httpx.BaseTransport:
        recorder = RecordingTransport(transport)
        recorder.captured = captured  # one list for both nodes
        return recorder

    services = {p: PointsService(pair.settings[p], wrap_transport=record) for p in (A, B)}
    with serving(pair, services):
        yield Nodes(pair, services, captured, root)


def member(n: int) -> str:
    return f"FM-{n:07d}"


@pytest.fixture(scope="module")
def linked(nodes: Nodes) -> Nodes:
    report = nodes.services[A].link(B)
    assert (report.own_set, report.peer_set, report.linked) == (160, 160, 120)
    return nodes


def test_transfer_moves_points_at_the_agreed_rate(linked: Nodes) -> None:
    fm, cp = linked.services[A], linked.services[B]
    before = fm.balance(member(100))["available"]
    receipt = fm.transfer([TransferRequest("conv-a1b2c3d4", member(100), B, 1_000)])[0]
    assert (receipt.state, receipt.points, receipt.fee, receipt.credited) == ("posted", 1_000, 10, 800)
    assert fm.balance(member(100))["available"] == before - 1_010
    assert fm.recover().outbox_left == 0
    assert cp.ledger.verify().pending == 0 and fm.ledger.verify().ok and cp.ledger.verify().ok
    credited = [h for h in cp.history("CP-0000100") if h["code"] == "interchange_in"]
    assert [(h["kind"], h["amount"]) for h in credited] == [("post", 800), ("pending", 800)]


def test_moved_points_keep_their_source_expiry(linked: Nodes) -> None:
    """The credit carries the expiry of the source lots it came from (earliest first, the fee last)."""
    fm, cp = linked.services[A], linked.services[B]
    fm.expire_points()
    now = datetime.now(UTC).isoformat()
    source = [
        (e["points"], e["expires_at"]) for e in fm.balance(member(104))["expiring"] if e["expires_at"] > now
    ]
    before = {e["expires_at"]: e["points"] for e in cp.balance("CP-0000104")["expiring"]}
    receipt = fm.transfer([TransferRequest("conv-expiry01", member(104), B, 1_000)])[0]
    assert receipt.state == "posted", receipt
    assert fm.recover().outbox_left == 0  # the post has reached CarePlus
    taken, left = [], receipt.points + receipt.fee
    for points, expires_at in source:
        taken.append((min(points, left), expires_at))
        left -= taken[-1][0]
        if left == 0:
            break
    moved = point_lots.split_credit(
        [point_lots.Slice(p, int(datetime.fromisoformat(e).timestamp() * 1e6)) for p, e in taken], 1_000, 800
    )
    after = {e["expires_at"]: e["points"] for e in cp.balance("CP-0000104")["expiring"]}
    gained = {e: after[e] - before.get(e, 0) for e in after if after[e] != before.get(e, 0)}
    expected = {datetime.fromtimestamp(s.expires_at_us / 1e6, UTC).isoformat(): s.points for s in moved}
    assert gained == expected and sum(gained.values()) == 800
    for service, who in ((fm, member(104)), (cp, "CP-0000104")):  # lots still sum to the balance
        balance = service.balance(who)
        assert sum(e["points"] for e in balance["expiring"]) == balance["available"]


def test_a_reservation_s_own_message_is_the_one_its_resends_read_back(linked: Nodes) -> None:
    """The batch that reserved sends a message built from the rows it wrote; the outbox's resend
    reads them back: both must carry the same fields (the destination's idempotency needs it)."""
    fm = linked.services[A]
    requests = [TransferRequest(f"conv-msg{n:05d}", member(106 + n), B, 500) for n in range(3)]
    receipts, messages = fm.source.reserve(requests)
    assert [r.state for r in receipts] == ["reserved"] * 3
    read_back = fm.source.reserve_messages([r.transfer_id for r in requests])
    assert messages == read_back and len(messages[B].items) == 3
    assert all(item.expiry for item in messages[B].items)
    assert {r.state for r in fm.delivery.send_messages(messages)} == {"posted"}
    assert fm.recover().outbox_left == 0


def test_a_reservation_is_its_own_pending_message_and_old_queued_reserves_still_go(linked: Nodes) -> None:
    """A reservation queues nothing in the outbox: its source row, reserved until the peer's answer
    decides it, is the message the pump and recovery resend. Reserve rows an older version queued
    are still sent while their transfer is reserved, and deleted once it is decided."""
    fm = linked.services[A]
    lost = [TransferRequest(f"conv-row{n:05d}", member(110 + n), B, 500) for n in range(3)]
    receipts, _ = fm.source.reserve(lost)  # its reserve message is never sent: as if lost
    assert [r.state for r in receipts] == ["reserved"] * 3
    done = fm.transfer([TransferRequest("conv-row-done1", member(113), B, 500)])[0]
    assert done.state == "posted"
    keys = [r.transfer_id for r in lost]
    everything = select(OUTBOX.c.key, OUTBOX.c.action).where(OUTBOX.c.key.in_([*keys, done.transfer_id]))
    with fm.ledger.reading() as conn:
        assert [row for row in conn.execute(everything) if row.action == "reserve"] == []
    with fm.ledger.transaction() as tx:  # as the older version queued them
        enqueue(tx.conn, [keys[0], done.transfer_id], B, "reserve", tx.now_us)
    report = fm.recover()
    assert [r.state for r in fm.source.receipts(keys)] == ["posted"] * 3
    assert report.outbox_left == 0
    with fm.ledger.reading() as conn:
        assert conn.execute(everything).all() == []


def test_a_message_in_an_old_wire_version_is_refused_naming_both_versions(linked: Nodes) -> None:
    """A node refuses a peer's message of another wire version (HTTP 422), and the sender's
    error names both versions rather than a bare status."""
    agreement = linked.pair.agreement
    item = ReserveItem(transfer_id="t-old-wire-1", link_token="ab" * 32, points=250, credited=200)
    old = ReserveRequest.model_construct(
        version=1,
        agreement_id=agreement.agreement_id,
        agreement_hash=agreement.content_hash(),
        epoch=agreement.epoch,
        items=(item,),
    )
    with pytest.raises(
        PeerError, match=rf"HTTP 422: points wire version 1 unsupported \(this node: {POINTS_WIRE_VERSION}\)"
    ):
        linked.services[A].peer(B).reserve(old)


def test_same_id_same_outcome_different_fields_refused(linked: Nodes) -> None:
    fm = linked.services[A]
    first = fm.transfer([TransferRequest("conv-idem0001", member(101), B, 500)])[0]
    again = fm.transfer([TransferRequest("conv-idem0001", member(101), B, 500)])[0]
    assert first == again and first.state == "posted"
    changed = fm.transfer([TransferRequest("conv-idem0001", member(101), B, 750)])[0]
    assert (changed.state, changed.reason) == ("refused", "transfer_id_reused")


@pytest.mark.parametrize(
    ("who", "points", "reason"),
    [
        (member(5), 500, "not_linked"),  # FreshMart-only member: no link with CarePlus
        (member(102), 100, "amount_range"),
        (member(102), 300, "block"),
        (member(102), 10**9 // 250 * 250, "amount_range"),
    ],
)
def test_refusals_name_the_rule(linked: Nodes, who: str, points: int, reason: str) -> None:
    receipt = linked.services[A].transfer([TransferRequest(f"bad-{reason}{points:x}a", who, B, points)])[0]
    assert (receipt.state, receipt.reason) == ("refused", reason)


def test_member_identifiers_are_refused_as_transfer_ids(linked: Nodes) -> None:
    receipt = linked.services[A].transfer([TransferRequest("+8613912345678", member(103), B, 500)])[0]
    assert receipt.state == "refused"


def test_batch_then_settlement_reconciles_and_coordinator_gets_totals(linked: Nodes) -> None:
    fm, cp = linked.services[A], linked.services[B]
    rich = [member(n) for n in range(40, 130) if fm.balance(member(n))["available"] >= 2_000]
    requests = [TransferRequest(f"batch-{k:04x}aa", rich[k % len(rich)], B, 250) for k in range(200)]
    receipts = fm.transfer(requests)
    assert [r for r in receipts if r.state != "posted"] == []
    reverse = cp.transfer([TransferRequest("back-0001aa", "CP-0000150", A, 500)])[0]
    assert (reverse.state, reverse.credited) == ("posted", 300)  # the worse rate back: 250 → 150
    result = fm.settle(B, *WIDE)
    assert result["reconciled"], result["differences"]
    totals = result["coordinator_totals"]
    assert set(totals) == {
        "agreement_id",
        "period_start",
        "period_end",
        "currency",
        "reconciled",
        "directions",
        "payer",
        "payee",
        "net_amount",
    }
    out = next(d for d in totals["directions"] if d["source"] == A)
    # Statements equal the ledgers: what A's clearing account for B received, what B's paid out.
    a_clearing, b_clearing = fm.ledger.balance(f"clearing:{B}"), cp.ledger.balance(f"clearing:{A}")
    assert a_clearing is not None and b_clearing is not None
    assert (out["points"], out["credited"]) == (a_clearing.credits_posted, b_clearing.debits_posted)
    assert (totals["payer"], totals["payee"]) == (A, B)
    linked.captured.append(json.dumps(totals).encode())  # what the coordinator is sent


def test_withdrawal_unlinks_and_refuses(linked: Nodes) -> None:
    fm = linked.services[A]
    partner_dir = linked.root / "data" / A
    store = ConsentStore(store_path(partner_dir))
    try:
        store.withdraw([member(130)], [Purpose.POINTS_INTERCHANGE], at=datetime(2026, 1, 2))
    finally:
        store.close()
    receipt = fm.transfer([TransferRequest("after-withdraw1", member(130), B, 500)])[0]
    assert (receipt.state, receipt.reason) == ("refused", "no_consent")
    again = fm.transfer([TransferRequest("after-withdraw2", member(130), B, 500)])[0]
    assert again.reason == "not_linked"  # the link itself is gone


def test_audit_events_key_by_transfer_and_link_hash_never_a_member(linked: Nodes) -> None:
    fm = linked.services[A]
    fm.recover()
    log = AuditLog.open(linked.pair.settings[A].audit_log)  # type: ignore[arg-type]
    try:
        events = [e for _, e in log.iter_events()]
    finally:
        log.close()
    kinds = {e.event_type for e in events}
    assert {
        EventType.POINTS_LINKED,
        EventType.POINTS_RESERVED,
        EventType.POINTS_POSTED,
        EventType.POINTS_SETTLED,
    } <= kinds
    # Every transfer this node posted as source is in a posted event, with its link token's hash.
    posted = [e for e in events if e.event_type == EventType.POINTS_POSTED and e.details["side"] == "source"]
    recorded = {t.transfer_id: t.link_token_hash for e in posted for t in e.transfers or ()}
    with fm.ledger.reading() as conn:
        rows = conn.execute(select(ROWS).where(ROWS.c.role == "source", ROWS.c.state == "posted")).all()
    assert rows and recorded == {r.transfer_id: r.link_hash for r in rows}
    # The link session's PSI runs under the interchange agreement: its event names the agreement.
    agreement = fm.book.for_peer(B, datetime.now(UTC))
    linked_events = [e for e in events if e.event_type == EventType.POINTS_LINKED]
    assert linked_events and {e.policy_hash for e in linked_events} == {agreement.content_hash()}
    body = b"".join(e.canonical_bytes() for e in events)
    assert b"FM-" not in body and b"CP-" not in body and b"+86" not in body


def test_nothing_sent_between_nodes_names_a_member(linked: Nodes) -> None:
    data = linked.root / "data"
    identifiers: set[str] = set()
    for partner in (A, B):
        members = pd.read_csv(data / partner / "members.csv", dtype=str)
        identifiers |= (
            set(members["member_id"]) | set(members["phone"]) | {p.lstrip("+") for p in members["phone"]}
        )
    assert len(linked.captured) > 10  # link, transfers, resolutions, decisions, statements
    sent = b"\n".join(linked.captured)
    leaked = sorted(i for i in identifiers if i.encode() in sent)
    assert leaked == []


def test_a_disagreeing_statement_is_flagged_and_audited(linked: Nodes) -> None:
    """Last on purpose: it alters one posted transfer at CarePlus, then puts it back."""
    from sqlalchemy import update

    from participant_node.points.store_schema import TABLES

    fm, cp = linked.services[A], linked.services[B]
    rows = TABLES["points_interchange"]
    with cp.ledger.transaction() as tx:
        key = tx.conn.execute(
            rows.select().where(rows.c.role == "destination", rows.c.state == "posted").limit(1)
        ).first()
        tx.conn.execute(update(rows).where(rows.c.key == key.key).values(credited=key.credited + 1))
    try:
        result = fm.settle(B, *WIDE)
    finally:
        with cp.ledger.transaction() as tx:
            tx.conn.execute(update(rows).where(rows.c.key == key.key).values(credited=key.credited))
    assert not result["reconciled"] and result["differences"] == ["directions", "net_amount"]
    fm.recover()
    log = AuditLog.open(linked.pair.settings[A].audit_log)  # type: ignore[arg-type]
    try:
        settled = [e for _, e in log.iter_events() if e.event_type == EventType.POINTS_SETTLED]
    finally:
        log.close()
    assert settled[-1].details["reconciled"] == "mismatch"
