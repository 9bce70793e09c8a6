"""`loyalfed train`'s audit events are appended as the job happens, so a crash leaves a truthful log.

The train command's own pieces — its audit step on a real local log, its budget ledger (SQLite)
and its progress sink — are driven the way the ServerApp drives them: reserve, two rounds, then
the process dies in round 3. Each event is in the log the moment its step happened (the log is
read after every call, before the command ends); the error appends ``job.failed``, not
``job.refused``, because the job had started. A job refused before its reservation appends only
``job.refused``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.audit_log import AuditLog
from audit.lineage_event import EventType
from coordinator.job_outcome import RoundReport
from loyalfed.cli.audit_trail import audit_step
from loyalfed.cli.training_audit import AuditedLedger, JobTrail
from protocol import JobSpec, PrivacySpentReply

PARTNERS = ["freshmart-north", "freshmart-south"]
POLICY_HASH = "ab" * 32


class NodeCrashed(RuntimeError):
    pass


def _types(log_path: Path) -> list[EventType]:
    with AuditLog.open(log_path) as log:
        return [event.event_type for _, event in log.iter_events()]


def _round(job: JobSpec, number: int) -> RoundReport:
    return RoundReport(
        job_id=job.job_id, server_round=number, nodes_ok=2, nodes_failed=0, seconds=1.0, train_loss=0.5,
        max_epsilon=0.4 * number,
    )  # fmt: skip


def test_events_are_appended_as_the_job_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_path = tmp_path / "audit.sqlite"
    monkeypatch.setenv("LOYALFED_AUDIT_LOG", str(log_path))
    job = JobSpec(task="churn", epsilon=2.0, delta=1e-5, rounds=5)
    ledger = AuditedLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    rounds_seen: list[int] = []
    failing = pytest.raises(NodeCrashed)
    with failing, audit_step(EventType.JOB_FINISHED, role="analyst", refused=EventType.JOB_REFUSED) as step:
        ledger.trail = trail = JobTrail(
            step, job, policy_hash=POLICY_HASH, on_round=lambda r: rounds_seen.append(r.server_round)
        )
        ledger.reserve(PARTNERS, job_id=job.job_id, purpose=str(job.purpose), epsilon=2.0, delta=1e-5)
        assert _types(log_path) == [EventType.BUDGET_RESERVED, EventType.JOB_STARTED]
        for number in (1, 2):
            trail.round_finished(_round(job, number))
            assert _types(log_path)[-1] == EventType.JOB_ROUND
        spent = {p: PrivacySpentReply(p, job.job_id, 0.8, 1e-5, 20) for p in PARTNERS}
        trail.budget_settled(job.job_id, spent)
        raise NodeCrashed("the process dies in round 3")
    ledger.close()
    with AuditLog.open(log_path) as log:
        events = [event for _, event in log.iter_events()]
    assert [e.event_type for e in events] == [
        EventType.BUDGET_RESERVED,
        EventType.JOB_STARTED,
        EventType.JOB_ROUND,
        EventType.JOB_ROUND,
        EventType.BUDGET_CHARGED,
        EventType.BUDGET_CHARGED,
        EventType.JOB_FAILED,
    ]
    assert rounds_seen == [1, 2]
    assert all(
        (e.job_id, e.policy_hash, e.purpose) == (job.job_id, POLICY_HASH, str(job.purpose)) for e in events
    )
    assert events[0].partners == tuple(PARTNERS) and events[0].epsilon == 2.0
    assert [e.details["round"] for e in events[2:4]] == [1, 2]
    assert [(e.partner, e.epsilon) for e in events[4:6]] == [(p, 0.8) for p in PARTNERS]
    assert events[-1].details == {"refusal": "node_crashed"}


def test_a_job_refused_before_its_reservation_is_only_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_path = tmp_path / "audit.sqlite"
    monkeypatch.setenv("LOYALFED_AUDIT_LOG", str(log_path))
    job = JobSpec(task="churn", epsilon=20.0, delta=1e-5, rounds=5)
    ledger = AuditedLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")  # default yearly cap ε 10
    from coordinator.job_errors import BudgetExceededError

    refused = pytest.raises(BudgetExceededError)
    with refused, audit_step(EventType.JOB_FINISHED, role="analyst", refused=EventType.JOB_REFUSED) as step:
        ledger.trail = JobTrail(step, job, policy_hash=POLICY_HASH, on_round=lambda r: None)
        ledger.reserve(PARTNERS, job_id=job.job_id, purpose=str(job.purpose), epsilon=20.0, delta=1e-5)
    ledger.close()
    assert _types(log_path) == [EventType.JOB_REFUSED]
