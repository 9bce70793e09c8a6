"""Node reports in the store, one contract on both backends (SQLite file, real PostgreSQL):
data-subject requests keep their newest status and their times with the UTC offset; consent
counts are replaced by the partner's next report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.consent_counts import list_consent_counts, record_consent_counts
from coordinator.platform.principals import Principal, create_principal
from coordinator.platform.subject_requests import list_subject_requests, record_subject_requests
from coordinator.store.database import open_store
from policies.roles import Role
from protocol.node_reports import ConsentCountReport, SubjectRequestBatch
from tests.coordinator.service.coordinator_federation import consent_count_report, subject_request_batch

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], AuditTrail]]:
    engine, sessions = open_store(database_url)
    trail = AuditTrail.open(tmp_path / "audit.sqlite", clock=lambda: T0)
    yield sessions, trail
    trail.close()
    engine.dispose()


def _principal(session: Session, role: Role, organisation: str) -> Principal:
    principal, _ = create_principal(
        session, name=f"{role.value}-{organisation}", role=role, organisation=organisation, now=T0
    )
    session.commit()
    return principal


def test_subject_requests_and_consent_counts_round_trip(store: tuple) -> None:
    sessions, trail = store
    with sessions() as session:
        node = _principal(session, Role.NODE, "north")
        officer = _principal(session, Role.DATA_OFFICER, "north")
        other = _principal(session, Role.DATA_OFFICER, "south")
        auditor = _principal(session, Role.AUDITOR, "federation")
        open_batch = SubjectRequestBatch.model_validate(subject_request_batch(completed=False))
        done_batch = SubjectRequestBatch.model_validate(subject_request_batch(completed=True))
        assert record_subject_requests(session, trail, actor=node, partner_id="north", batch=open_batch) == 2
        assert record_subject_requests(session, trail, actor=node, partner_id="north", batch=done_batch) == 1
    with sessions() as session:
        views = list_subject_requests(session, viewer=officer, now=T0)
        erasure = next(v for v in views if v.row.kind == "erasure")
        assert erasure.row.status == "completed" and not erasure.overdue
        assert erasure.row.completed_at == datetime(2026, 3, 2, 9, tzinfo=UTC)
        assert erasure.row.deadline - erasure.row.received_at == timedelta(days=30)
        assert next(v for v in views if v.row.kind == "access").overdue
        assert list_subject_requests(session, viewer=other, now=T0) == []
        assert len(list_subject_requests(session, viewer=auditor, now=T0)) == 2
        for members in (1_230, 60):
            report = ConsentCountReport.model_validate(consent_count_report(members))
            record_consent_counts(session, trail, actor=node, partner_id="north", report=report)
    with sessions() as session:
        rows = list_consent_counts(session)
        assert [(r.purpose, r.members) for r in rows] == [
            ("analytics.churn_model", 60),
            ("analytics.propensity_model", None),
        ]
        assert rows[0].counted_at == datetime(2026, 3, 2, 10, tzinfo=UTC)
