"""A transfer's lineage event, recorded by splicing its fields into a validated template, has exactly
the canonical bytes of the same event validated field by field (the bytes the audit log commits to)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.lineage_event import EventType, LineageEvent, Role
from participant_node.points.audit_trail import record_event
from participant_node.points.wire import check_transfer_id
from policies.purpose import Purpose


def _accepted(transfer_id: str) -> bool:
    """Ids a node takes (the wire's rule, which the audit log's identifier guard shares)."""
    try:
        check_transfer_id(transfer_id)
    except ValueError:
        return False
    return True


_IDS = (st.uuids().map(lambda u: u.hex) | st.from_regex(r"\A[A-Za-z][A-Za-z._:-]{0,20}\Z")).filter(_accepted)
_HASHES = st.none() | st.from_regex(r"\A[0-9a-f]{64}\Z")
_DETAILS = st.fixed_dictionaries(
    {"points": st.integers(0, 10**12), "credited": st.integers(0, 10**12)},
    optional={"fee": st.integers(0, 10**6), "side": st.sampled_from(["source", "destination"])},
)
_TIMES = st.integers(0, 4_000_000_000_000_000) | st.integers(0, 4_000_000_000).map(lambda s: s * 1_000_000)


def _validated(
    kind: EventType, at_us: int, transfer_id: str, link_hash: str | None, details: dict[str, Any]
) -> LineageEvent:
    return LineageEvent.model_validate(
        {
            "event_type": kind,
            "time": datetime.fromtimestamp(at_us / 1_000_000, UTC),
            "actor": "freshmart node",
            "role": Role.NODE,
            "partner": "freshmart",
            "partners": ("careplus", "freshmart"),
            "purpose": Purpose.POINTS_INTERCHANGE.value,
            "transfer_id": transfer_id,
            "link_token_hash": link_hash,
            "details": details,
        }
    )


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from([EventType.POINTS_RESERVED, EventType.POINTS_POSTED, EventType.POINTS_VOIDED]),
    at_us=_TIMES,
    transfer_id=_IDS,
    link_hash=_HASHES,
    details=_DETAILS,
)
def test_spliced_event_is_the_validated_events_canonical_bytes(
    kind: EventType, at_us: int, transfer_id: str, link_hash: str | None, details: dict[str, Any]
) -> None:
    tx: Any = SimpleNamespace(events=[])  # the transaction's pending event rows, all record_event writes
    record_event(
        tx,
        kind,
        partner="freshmart",
        peer="careplus",
        at_us=at_us,
        transfer_id=transfer_id,
        link_hash=link_hash,
        details=details,
    )
    expected = _validated(kind, at_us, transfer_id, link_hash, details).canonical_bytes()
    assert tx.events == [{"body": expected.decode("utf-8")}]
    assert LineageEvent.from_canonical(expected).canonical_bytes() == expected
