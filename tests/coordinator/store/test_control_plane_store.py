"""The coordinator's store, one contract on two backends: a SQLite file and a real PostgreSQL server.

Migrations run at start-up and are idempotent; every domain write round-trips with timezone-aware
times, JSON documents and artefact bytes intact; unique constraints (token digests, decision
nonces) hold on both backends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session, sessionmaker

from coordinator.platform import budgets, decisions, jobs, model_registry, organisations, policy_registry
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, NotAuthenticatedError
from coordinator.platform.job_runs import (
    begin_run,
    finish_run,
    job_spec_for_run,
    members_may_overlap,
    run_config,
)
from coordinator.platform.organisations import OrganisationKind
from coordinator.platform.principals import Principal, authenticate, create_principal, ensure_admin_token
from coordinator.store.database import migrate, open_engine, open_store
from policies.approval import ApprovalDecision
from policies.roles import Role
from policies.signed_approval import SignatureRejectedError, public_key_b64, sign_decision
from tests.coordinator.service.coordinator_federation import PARTNERS, job_body, policy_document

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


class StepClock:
    """A clock that moves one second per reading, so every stored time is distinct and known."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], AuditTrail]]:
    engine, sessions = open_store(database_url)
    migrate(engine)  # a second start finds the store at head and changes nothing
    trail = AuditTrail.open(tmp_path / "audit.sqlite", clock=StepClock())
    yield sessions, trail
    trail.close()
    engine.dispose()


def _principal(session: Session, trail: AuditTrail, role: Role, organisation: str) -> Principal:
    principal, _token = create_principal(
        session, name=f"{role.value}-{organisation}", role=role, organisation=organisation, now=trail.clock()
    )
    session.commit()
    return principal


def test_migrations_create_every_table_and_record_head(database_url: str) -> None:
    engine = open_engine(database_url)
    migrate(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"organisations", "principals", "policy_versions", "decisions", "jobs", "models"} <= tables
    assert {
        "interchange_agreements",
        "interchange_agreement_signatures",
        "points_settlements",
        "psi_runs",
    } <= tables
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0005"
    engine.dispose()


def test_tokens_stored_as_digests_and_admin_created_once(store: tuple, tmp_path: Path) -> None:
    sessions, trail = store
    with sessions() as session:
        path = ensure_admin_token(session, tmp_path, now=trail.clock())
        assert path is not None and ensure_admin_token(session, tmp_path, now=trail.clock()) is None
        token = path.read_text().strip()
        admin = authenticate(session, token)
        assert admin.role is Role.FEDERATION_ADMIN
        stored = session.execute(sa.text("SELECT token_sha256 FROM principals")).scalars().all()
        assert stored == [hashlib.sha256(token.encode()).hexdigest()] and token not in stored
        with pytest.raises(NotAuthenticatedError):
            authenticate(session, token + "x")


def _setup(sessions: sessionmaker[Session], trail: AuditTrail) -> dict[str, object]:
    with sessions() as session:
        admin = _principal(session, trail, Role.FEDERATION_ADMIN, "federation")
        keys = {}
        for partner in PARTNERS:
            organisations.create_organisation(
                session,
                trail,
                actor=admin,
                org_id=partner,
                name=partner,
                kind=OrganisationKind.STORE_GROUP,
                region="CN",
            )
            officer = _principal(session, trail, Role.DATA_OFFICER, partner)
            keys[partner] = (officer, Ed25519PrivateKey.generate())
            organisations.register_officer_key(
                session, trail, actor=officer, public_key_b64=public_key_b64(keys[partner][1])
            )
        analyst = _principal(session, trail, Role.ANALYST, "federation")
        version = policy_registry.draft_policy(session, trail, actor=analyst, document=policy_document())
        return {"admin": admin, "keys": keys, "analyst": analyst, "version": version}


def _decide(
    session: Session,
    trail: AuditTrail,
    world: dict,
    partner: str,
    decision: ApprovalDecision,
    **kwargs: object,
) -> object:
    officer, key = world["keys"][partner]
    version = world["version"]
    signed = sign_decision(
        key,
        policy_id=version.policy_id,
        policy_version=version.version,
        policy_hash=version.policy_hash,
        partner_id=partner,
        decision=decision,
        **kwargs,
    )
    return decisions.record_decision(
        session, trail, actor=officer, policy_id=version.policy_id, version=version.version, signed=signed
    )


def test_policy_versions_decisions_and_replay_on_both_backends(store: tuple) -> None:
    sessions, trail = store
    world = _setup(sessions, trail)
    with sessions() as session:
        analyst = world["analyst"]
        second = policy_registry.draft_policy(
            session, trail, actor=analyst, document=policy_document(epsilon=2.0)
        )
        assert (second.version, len(policy_registry.latest_versions(session))) == (2, 1)
        changes = policy_registry.diff_versions(session, "churn-2026", 1, 2)
        assert [(c.path, c.before, c.after) for c in changes] == [("privacy.epsilon", 3.0, 2.0)]
        north, south = PARTNERS
        row = _decide(
            session, trail, world, north, ApprovalDecision.APPROVED, random_bytes=lambda n: b"\x01" * n
        )
        assert row.signed_at.tzinfo is not None
        with pytest.raises(ConflictError, match="replayed"):
            _decide(
                session, trail, world, north, ApprovalDecision.APPROVED, random_bytes=lambda n: b"\x01" * n
            )
        session.rollback()
        _decide(session, trail, world, south, ApprovalDecision.APPROVED)
        status = decisions.approval_of(session, world["version"])
        assert status.approved
        # Flip a stored decision in the database: its signature no longer verifies, it no longer counts.
        session.execute(
            sa.text("UPDATE decisions SET statement = replace(statement, 'approved', 'rejected')")
        )
        session.commit()
        assert not decisions.approval_of(session, world["version"]).approved


def test_job_gate_budget_run_and_model_round_trip(store: tuple) -> None:
    sessions, trail = store
    world = _setup(sessions, trail)
    with sessions() as session:
        for partner in PARTNERS:
            _decide(session, trail, world, partner, ApprovalDecision.APPROVED)
        job = jobs.submit_job(session, trail, actor=world["analyst"], body=job_body(epsilon=2.5))
        assert job.state == "queued" and job.submitted_at.tzinfo is not None
        spec = job_spec_for_run(session, job)
        assert (
            spec.job_id == job.id and len(spec.signed_decisions) == 2 and spec.policy_hash == job.policy_hash
        )
        views = budgets.list_budgets(session, year=trail.clock().year)
        assert [(v.partner_id, v.epsilon_reserved, v.epsilon_remaining) for v in views] == [
            ("freshmart-north", 2.5, 7.5),
            ("freshmart-south", 2.5, 7.5),
        ]
        # Store groups only: each member sits at one node. An organisation not known to be one may overlap.
        assert members_may_overlap(session, PARTNERS) is False
        assert members_may_overlap(session, (*PARTNERS, "careplus")) is True
        config = run_config(
            spec, expected_nodes=2, coordinator_url="", token="", ca="", members_may_overlap=False
        )
        assert "members-may-overlap = false" in config
        token = begin_run(session, trail, job_id=job.id)
        runner = authenticate(session, token)
        assert runner.role is Role.JOB_RUN and runner.job_id == job.id
        weights = bytes(range(256)) * 40
        model = model_registry.publish_model(
            session,
            trail,
            actor=runner,
            job_id=job.id,
            card={"task": "churn"},
            weights=weights,
            sha256=hashlib.sha256(weights).hexdigest(),
        )
        finish_run(session, trail, job_id=job.id, state=jobs.JobState.STOPPED, reason="stopped")
        with pytest.raises(NotAuthenticatedError):
            authenticate(session, token)  # the run's credential is revoked with its end
    with sessions() as session:
        assert model_registry.get_model(session, model.id).artefact == weights
        detail = jobs.job_detail(session, job.id)
        assert detail.job.state == "stopped" and detail.job.model_id == model.id
        assert [line.message for line in jobs.read_logs(session, job.id)][-1] == "state stopped: stopped"


def test_a_signature_by_an_unregistered_key_is_refused(store: tuple) -> None:
    sessions, trail = store
    world = _setup(sessions, trail)
    officer, _key = world["keys"]["freshmart-north"]
    version = world["version"]
    forged = sign_decision(
        Ed25519PrivateKey.generate(),
        policy_id=version.policy_id,
        policy_version=1,
        policy_hash=version.policy_hash,
        partner_id="freshmart-north",
        decision=ApprovalDecision.APPROVED,
    )
    with sessions() as session, pytest.raises(SignatureRejectedError):
        decisions.record_decision(
            session, trail, actor=officer, policy_id=version.policy_id, version=1, signed=forged
        )
