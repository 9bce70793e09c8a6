"""The warm node service serves a job message only after its own gate; a refusal is typed and audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity
from node_service_fixtures import PARTNER, churn_policy, write_consenting_partner

from audit import AuditLog
from participant_node.forwarding_client_app import QUERY_ACTIONS
from participant_node.service.job_gate import JobGate
from participant_node.service.job_service import JobService
from participant_node.service.node_audit import NodeAudit
from participant_node.training.job_handler import NodeContext, handle
from policies.approval import ApprovalDecision
from policies.policy import DataUsePolicy
from policies.signed_approval import sign_decision
from protocol import (
    JobSpec,
    NodeRecord,
    QueryAction,
    RecordKey,
    SignedDecisionRecord,
    job_config_record,
    refusal_of,
)
from protocol.requests import query_type

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def server_task() -> Iterator[None]:
    # Messages are created by the ServerApp's task (Flower sets its identity in that process).
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None  # type: ignore[assignment]


def _service(
    tmp_path: Path, officer: Ed25519PrivateKey, policy: DataUsePolicy
) -> tuple[JobService, NodeAudit]:
    partner_dir = write_consenting_partner(tmp_path / PARTNER)
    state = tmp_path / "state"
    state.mkdir()
    gate = JobGate(
        partner_id=PARTNER,
        partner_dir=partner_dir,
        state=state,
        officer_keys=[officer.public_key()],
        policy_source=lambda _id, _version: policy,
        yearly_cap=10.0,
        now=lambda: NOW,
    )
    audit = NodeAudit(state, PARTNER, now=lambda: NOW)
    node = NodeContext(partner_dir=partner_dir, partner_id=PARTNER, state_dir=state)
    return JobService(gate, audit, lambda message: handle(message, node)), audit


def _describe(policy: DataUsePolicy, *signers: Ed25519PrivateKey) -> Message:
    decisions = [
        sign_decision(
            key,
            policy_id=policy.policy_id,
            policy_version=1,
            policy_hash=policy.content_hash(),
            partner_id=PARTNER,
            decision=ApprovalDecision.APPROVED,
            now=NOW,
        )
        for key in signers
    ]
    spec = JobSpec(
        job_id="job-0123456789ab",
        task="churn",
        epsilon=3.0,
        policy_id=policy.policy_id,
        policy_version=1,
        policy_hash=policy.content_hash(),
        signed_decisions=tuple(
            SignedDecisionRecord(statement=d.statement, signature=d.signature) for d in decisions
        ),
    )
    return Message(
        RecordDict({RecordKey.CONFIG: job_config_record(spec)}),
        dst_node_id=7,
        message_type=query_type(QueryAction.DESCRIBE),
    )


def _events(state: Path) -> list[tuple[str, dict[str, object]]]:
    with AuditLog.open(state / "audit.sqlite") as log:
        return [(event.event_type.value, dict(event.details)) for _seq, event in log.iter_events()]


def test_a_step_its_officer_approved_is_served_and_audited(tmp_path: Path) -> None:
    officer, policy = Ed25519PrivateKey.generate(), churn_policy()
    service, audit = _service(tmp_path, officer, policy)
    reply = service.serve(_describe(policy, officer))
    audit.close()
    assert refusal_of(reply) is None
    assert NodeRecord.parse(reply).partner_id == PARTNER
    assert _events(tmp_path / "state") == [("job.round", {"step": "query.describe", "round": 0})]


def test_a_step_without_its_officers_signature_is_refused_by_this_node(tmp_path: Path) -> None:
    officer, policy = Ed25519PrivateKey.generate(), churn_policy()
    service, audit = _service(tmp_path, officer, policy)
    # The coordinator says approved and even forwards a valid signature — by someone else's key.
    reply = service.serve(_describe(policy, Ed25519PrivateKey.generate()))
    audit.close()
    refusal = refusal_of(reply)
    assert refusal is not None and refusal.partner_id == PARTNER
    assert refusal.reason.startswith("no decision signed by this partner's data officer on policy churn-2024")
    assert _events(tmp_path / "state") == [("job.refused", {"rule": "officer_signature"})]


def test_the_thin_client_app_routes_every_query_action_of_the_protocol() -> None:
    assert set(QUERY_ACTIONS) == {action.value for action in QueryAction}
    assert MessageType.QUERY == "query"
