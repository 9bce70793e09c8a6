"""What a node tells the coordinator about its data (schema, rounded counts) and its own audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from node_service_fixtures import write_consenting_partner

from audit import EventRejectedError, EventType, SignedTreeHead
from audit.log_verification import verify_log
from participant_node.data import load_partner
from participant_node.service.dataset_summary import dataset_summary, rounded
from participant_node.service.node_audit import NodeAudit


@pytest.mark.parametrize(
    ("count", "expected"), [(0, 0), (49, 0), (50, 100), (149, 100), (150, 200), (1234, 1200)]
)
def test_counts_are_rounded_to_the_nearest_hundred(count: int, expected: int) -> None:
    assert rounded(count) == expected


def test_the_summary_names_columns_and_rounded_counts_never_values(tmp_path: Path) -> None:
    folder = write_consenting_partner(tmp_path / "freshmart-north", members=140, consenting=60)
    summary = dataset_summary(load_partner(folder))
    assert summary == {
        "members": {"columns": ["member_id", "phone", "joined_at"], "rows_rounded": 100},
        "transactions": {"columns": ["member_id", "timestamp", "amount"], "rows_rounded": 100},
        "consents": {
            "columns": ["member_id", "purpose", "granted_at", "scope", "cross_border"],
            "rows_rounded": 100,
        },
    }
    assert "M-0001" not in repr(summary) and "+86138" not in repr(summary)


def test_the_node_appends_its_events_and_keeps_the_newest_signed_head(tmp_path: Path) -> None:
    audit = NodeAudit(tmp_path, "freshmart-north", now=lambda: datetime(2025, 3, 1, tzinfo=UTC))
    assert audit.latest_head() is None
    audit.record(EventType.JOB_REFUSED, job_id="job-0123456789ab", details={"rule": "officer_signature"})
    audit.record(EventType.JOB_ROUND, job_id="job-0123456789ab", details={"step": "train", "round": 1})
    head = audit.latest_head()
    assert head is not None and head.tree_size == 2
    saved = SignedTreeHead.model_validate_json((tmp_path / "audit_tree_head.json").read_text("utf-8"))
    assert saved == head
    with pytest.raises(EventRejectedError):  # member identifiers never enter the log
        audit.record(EventType.JOB_ROUND, details={"member": "+8613800000001"})
    assert audit.safe_record(EventType.JOB_ROUND, details={"member": "+8613800000001"}) is False
    key = audit.local_public_key
    audit.close()
    assert verify_log(tmp_path / "audit.sqlite", public_key=key).ok
