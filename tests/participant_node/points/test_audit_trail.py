"""A transaction's transfers are recorded in one lineage event, and each transfer is still found by
its id: in the event (``names_transfer``), in the audit log (``AuditLog.events(transfer_id=…)``)
and by the auditor's ``loyalfed audit transfer``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from audit.audit_log import AuditLog
from audit.errors import AuditError
from audit.lineage_event import MAX_TRANSFERS_PER_EVENT, EventType, LineageEvent
from audit.tree_head import TreeHeadSigner
from loyalfed.cli.app import app
from participant_node.points.audit_trail import RecordedTransfer, record_transfers
from participant_node.points.wire import check_transfer_id


def _accepted(transfer_id: str) -> bool:
    """Ids a node takes (the wire's rule, which the audit log's identifier guard shares)."""
    try:
        check_transfer_id(transfer_id)
    except ValueError:
        return False
    return True


_IDS = (st.uuids().map(lambda u: u.hex) | st.from_regex(r"\A[A-Za-z][A-Za-z._:-]{0,20}\Z")).filter(_accepted)
_TRANSFERS = st.lists(
    st.builds(
        RecordedTransfer,
        transfer_id=_IDS,
        link_hash=st.none() | st.from_regex(r"\A[0-9a-f]{64}\Z"),
        points=st.integers(0, 10**12),
        credited=st.integers(0, 10**12),
        fee=st.none() | st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda t: t.transfer_id,
)
_KINDS = st.sampled_from([EventType.POINTS_RESERVED, EventType.POINTS_POSTED, EventType.POINTS_VOIDED])


def _recorded(
    kind: EventType, transfers: list[RecordedTransfer], at_us: int = 1_765_000_000_000_000
) -> list[str]:
    tx: Any = SimpleNamespace(events=[], now_us=at_us)  # what record_transfers writes to: the pending rows
    record_transfers(tx, kind, partner="freshmart", peer="careplus", side="source", transfers=transfers)
    return [row["body"] for row in tx.events]


@settings(max_examples=100, deadline=None)
@given(kind=_KINDS, transfers=_TRANSFERS)
def test_one_event_lists_every_transfer_and_sums_their_amounts(
    kind: EventType, transfers: list[RecordedTransfer]
) -> None:
    (body,) = _recorded(kind, transfers)
    event = LineageEvent.from_canonical(body.encode("utf-8"))
    assert event.canonical_bytes() == body.encode("utf-8")
    assert event.event_type == kind and event.transfer_id is None
    assert event.transfer_ids() == tuple(t.transfer_id for t in transfers)
    assert all(event.names_transfer(t.transfer_id) for t in transfers)
    refs = {r.transfer_id: r for r in event.transfers or ()}
    for t in transfers:
        ref = refs[t.transfer_id]
        assert (ref.link_token_hash, ref.points, ref.credited, ref.fee) == (
            t.link_hash,
            t.points,
            t.credited,
            t.fee,
        )
    assert event.details["transfers"] == len(transfers)
    assert event.details["points"] == sum(t.points for t in transfers)
    assert event.details["credited"] == sum(t.credited for t in transfers)
    assert event.details["side"] == "source"


def test_a_batch_larger_than_an_event_takes_several() -> None:
    transfers = [
        RecordedTransfer(f"t-{i:06x}abc", None, 250, 200) for i in range(MAX_TRANSFERS_PER_EVENT + 3)
    ]
    bodies = _recorded(EventType.POINTS_POSTED, transfers)
    events = [LineageEvent.from_canonical(b.encode("utf-8")) for b in bodies]
    assert [len(e.transfers or ()) for e in events] == [MAX_TRANSFERS_PER_EVENT, 3]
    assert [i for e in events for i in e.transfer_ids()] == [t.transfer_id for t in transfers]


def test_an_event_names_one_transfer_or_a_batch_each_once() -> None:
    body = json.loads(_recorded(EventType.POINTS_POSTED, [RecordedTransfer("t-0a1b2c3d", None, 1, 1)])[0])
    with pytest.raises(ValidationError, match="not both"):
        LineageEvent.model_validate(body | {"transfer_id": "t-0a1b2c3d"})
    with pytest.raises(ValidationError, match="each transfer once"):
        LineageEvent.model_validate(body | {"transfers": body["transfers"] * 2})
    with pytest.raises(ValidationError):  # member identifiers never enter the log, in a batch either
        LineageEvent.model_validate(
            body | {"transfers": [body["transfers"][0] | {"transfer_id": "13800138000"}]}
        )


def test_the_log_and_the_auditor_find_each_transfer_by_its_id(tmp_path: Path) -> None:
    transfers = [
        RecordedTransfer(f"{i:08x}-aaaa-4bbb-8ccc-{i:012x}", "ab" * 32, 250, 200, 5) for i in range(50)
    ]
    reserved = _recorded(EventType.POINTS_RESERVED, transfers)
    posted = _recorded(EventType.POINTS_POSTED, transfers[:20])
    voided = _recorded(EventType.POINTS_VOIDED, transfers[20:])
    path = tmp_path / "audit.sqlite"
    with AuditLog.open(path, signer=TreeHeadSigner(Ed25519PrivateKey.generate())) as log:
        log.append_batch([LineageEvent.from_canonical(b.encode()) for b in reserved + posted + voided])
        for n, transfer in enumerate(transfers):
            found = log.events(transfer_id=transfer.transfer_id)
            kinds = [event.event_type for _, event in found]
            end = EventType.POINTS_POSTED if n < 20 else EventType.POINTS_VOIDED
            assert kinds == [EventType.POINTS_RESERVED, end]
        assert log.events(transfer_id="not-a-transfer-1234abcd") == []

    result = CliRunner().invoke(
        app, ["audit", "transfer", transfers[25].transfer_id, "--db", str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["seq"], r["event_type"], r["points"], r["batch"]) for r in rows] == [
        (0, "points.reserved", 250, 50),
        (2, "points.voided", 250, 30),
    ]
    missing = CliRunner().invoke(app, ["audit", "transfer", "t-0000ffff", "--db", str(path)])
    assert isinstance(missing.exception, AuditError)  # main() prints it as a one-line error, exit 1
    assert "no event records transfer t-0000ffff" in str(missing.exception)
