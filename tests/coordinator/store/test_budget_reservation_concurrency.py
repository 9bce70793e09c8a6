"""The coordinator service's budget table under concurrent job submissions from separate processes.

Ten processes open the service's store (a SQLite file, then a real PostgreSQL server), wait at
a barrier and each submit a job on the same approved policy; the start gate checks both partners'
yearly caps and reserves in one transaction under the budget lock, so exactly as many jobs are
queued as fit and the reservations never exceed either cap.
"""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session, sessionmaker

from coordinator.platform import budgets, decisions, jobs, organisations, policy_registry
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.organisations import OrganisationKind
from coordinator.platform.principals import Principal, create_principal
from coordinator.store.database import open_engine, open_store, session_factory
from policies.approval import ApprovalDecision
from policies.roles import Role
from policies.signed_approval import public_key_b64, sign_decision
from tests.coordinator.service.coordinator_federation import PARTNERS, job_body, policy_document

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
PROCESSES = 10
CAP = 10.0
JOB_EPSILON = 1.5  # 6 jobs fit in 10 (9.0); a 7th would reach 10.5


def _principal(session: Session, role: Role, organisation: str) -> Principal:
    principal, _token = create_principal(
        session, name=f"{role.value}-{organisation}", role=role, organisation=organisation, now=NOW
    )
    session.commit()
    return principal


def _approved_policy(sessions: sessionmaker[Session], trail: AuditTrail) -> Principal:
    """Both partners registered with a cap of CAP and approving the policy; returns the analyst."""
    with sessions() as session:
        admin = _principal(session, Role.FEDERATION_ADMIN, "federation")
        officers = {}
        for partner in PARTNERS:
            organisations.create_organisation(
                session, trail, actor=admin, org_id=partner, name=partner,
                kind=OrganisationKind.STORE_GROUP, region="CN",
            )  # fmt: skip
            officer = _principal(session, Role.DATA_OFFICER, partner)
            officers[partner] = (officer, Ed25519PrivateKey.generate())
            organisations.register_officer_key(
                session, trail, actor=officer, public_key_b64=public_key_b64(officers[partner][1])
            )
            budgets.set_cap(session, trail, actor=officer, partner_id=partner, year=NOW.year, epsilon_cap=CAP)
        analyst = _principal(session, Role.ANALYST, "federation")
        version = policy_registry.draft_policy(session, trail, actor=analyst, document=policy_document())
        for partner, (officer, key) in officers.items():
            signed = sign_decision(
                key,
                policy_id=version.policy_id,
                policy_version=version.version,
                policy_hash=version.policy_hash,
                partner_id=partner,
                decision=ApprovalDecision.APPROVED,
            )
            decisions.record_decision(
                session,
                trail,
                actor=officer,
                policy_id=version.policy_id,
                version=version.version,
                signed=signed,
            )
        return analyst


def _submitter(url: str, folder: str, index: int, analyst: Principal, barrier: Any, results: Any) -> None:
    engine = open_engine(url)
    trail = AuditTrail.open(Path(folder) / f"audit-{index}.sqlite", clock=lambda: NOW)
    try:
        with session_factory(engine)() as session:
            barrier.wait(timeout=60)
            job = jobs.submit_job(session, trail, actor=analyst, body=job_body(epsilon=JOB_EPSILON))
            results.put((index, job.state, job.reason or ""))
    except Exception as err:  # reported to the parent, which fails the test with it
        results.put((index, "error", f"{type(err).__name__}: {err}"))
    finally:
        trail.close()
        engine.dispose()


def test_concurrent_submissions_never_overspend_a_cap(database_url: str, tmp_path: Path) -> None:
    engine, sessions = open_store(database_url)
    trail = AuditTrail.open(tmp_path / "audit.sqlite", clock=lambda: NOW)
    analyst = _approved_policy(sessions, trail)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=_submitter, args=(database_url, str(tmp_path), i, analyst, barrier, results))
        for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = {
        index: (state, reason) for index, state, reason in (results.get(timeout=120) for _ in workers)
    }
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert not [o for o in outcomes.values() if o[0] == "error"], outcomes
    queued = [i for i, (state, _) in outcomes.items() if state == "queued"]
    refused = [reason for state, reason in outcomes.values() if state == "failed"]
    assert len(queued) == int(CAP // JOB_EPSILON) and len(refused) == PROCESSES - len(queued)
    assert all("budget has ε 1 left, the job needs 1.5" in reason for reason in refused), refused
    with sessions() as session:
        views = budgets.list_budgets(session, year=NOW.year)
        assert [(v.partner_id, v.epsilon_cap) for v in views] == [(p, CAP) for p in PARTNERS]
        assert all(v.epsilon_reserved == pytest.approx(len(queued) * JOB_EPSILON) for v in views)
    trail.close()
    engine.dispose()
