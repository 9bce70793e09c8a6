"""PSI run records become audit-log lineage events without identifiers or nulls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit.lineage_event import LineageEvent
from participant_node.matching.run_record import MatchingRunRecord


@pytest.mark.parametrize("cardinality", [709, None])
def test_run_records_are_accepted_by_the_audit_log(cardinality: int | None) -> None:
    record = MatchingRunRecord(
        session_id="ab" * 16,
        role="initiator",
        partner="freshmart",
        peer="careplus",
        purpose="marketing.cross_brand_matching",
        mode="cardinality",
        own_set_size=1440,
        peer_set_size=1213,
        result_cardinality=cardinality,
        consent_snapshot_hash="9f" * 32,
        at=datetime(2020, 1, 1),
    )
    event = LineageEvent.from_record(
        {"event_type": "psi.run", **record.lineage_fields()}, now=datetime.now(UTC), actor="loyalfed-demo"
    )
    assert event.details["own_set_size"] == 1440 and event.details["mode"] == "cardinality"
    assert ("result_cardinality" in event.details) == (cardinality is not None)
