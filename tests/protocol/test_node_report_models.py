"""The node-report wire models: counts coarsened and withheld below k, request ids that cannot carry
an identifier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol.node_reports import SubjectRequestReport, coarsen_count


def test_coarsen_count_rounds_down_and_withholds_below_k() -> None:
    assert coarsen_count(27) == 20 and coarsen_count(19) is None and coarsen_count(0) is None
    assert coarsen_count(1_239) == 1_230 and coarsen_count(45, granularity=25, k=20) == 25
    with pytest.raises(ValueError, match="not negative"):
        coarsen_count(-1)


@given(st.integers(min_value=0, max_value=10**9))
def test_a_coarse_count_never_overstates_and_hides_the_last_digit(members: int) -> None:
    shown = coarsen_count(members)
    assert shown is None or (shown <= members < shown + 10 and shown % 10 == 0 and shown >= 20)


def _report(request_id: str) -> SubjectRequestReport:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    return SubjectRequestReport(
        request_id=request_id, kind="erasure", received_at=at, deadline=at + timedelta(days=30), status="open"
    )


def test_a_request_id_is_the_nodes_random_id_only() -> None:
    assert _report("erasure-0a1b2c3d4e5f").request_id == "erasure-0a1b2c3d4e5f"
    for bad in ("erasure-13800138000a", "erasure-bob@example.com", "access-0a1b2c3d4e5f", "erasure-0a1b"):
        with pytest.raises(ValidationError):
            _report(bad)
