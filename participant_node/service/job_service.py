"""The warm side of the node's ClientApp: admit a job message through the node's own gate, then serve it.

Each message the SuperNode receives arrives here (over loopback from the thin ClientApp). The node
reads the job spec (``protocol``), runs its gate (``job_gate``: officer signature, accountant and
yearly cap, consent), appends the step to its audit trail, then calls the job engine's handler.
A refused step gets the typed ``protocol.Refusal`` reply naming this partner and the reason, and a
``job.refused`` lineage event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flwr.app import Message, RecordDict
from flwr.app.message_type import MessageType

from audit import AuditError, EventType
from participant_node.service.errors import JobRefusedError
from participant_node.service.job_gate import JobClaims, JobGate
from participant_node.service.local_api import RUNNING_APP
from participant_node.service.node_audit import NodeAudit
from policies.signed_approval import SignedDecision
from protocol import JobSpec, JobSpecError, QueryAction, RecordKey, Refusal, server_round_of, spec_of
from protocol.wire_keys import TrainKey

__all__ = ["JobHandler", "JobService", "claims_of"]

# The job engine's node side for this node (``participant_node.training.job_handler.handle`` bound
# to the node's context): a message in, its reply out.
JobHandler = Callable[[Message], Message]

_LOG = logging.getLogger(__name__)
# Reads only the node's own accountant (what a job already spent), never member data: the ledger
# must be able to settle a job even after the node refused its later steps.
_UNGATED = {f"{MessageType.QUERY}.{QueryAction.PRIVACY_SPENT}"}


def claims_of(spec: JobSpec, *, flower_app: str | None = None) -> JobClaims:
    """What the job spec claims about its policy and budget, for the gate to check.

    ``flower_app`` is the hash of the Flower App the message came through, when the node knows it.
    """
    return JobClaims(
        job_id=spec.job_id,
        purpose=spec.purpose.value,
        epsilon=spec.epsilon,
        delta=spec.delta,
        k_min=spec.k_min,
        policy_id=spec.policy_id,
        policy_version=spec.policy_version,
        policy_hash=spec.policy_hash,
        decisions=tuple(SignedDecision(d.statement, d.signature) for d in spec.signed_decisions),
        flower_app=flower_app,
    )


class JobService:
    """Serve job messages for one node behind its gate."""

    def __init__(self, gate: JobGate, audit: NodeAudit, handler: JobHandler) -> None:
        self.gate, self.audit, self._handle = gate, audit, handler
        # One step at a time per node: the accountant's charge is a read-modify-write of its file,
        # and the gate's decision history must see decisions in order.
        self._lock = threading.Lock()

    def serve(self, message: Message) -> RecordDict:
        """The reply content for ``message``: the handler's, or a refusal (steps run one at a time)."""
        with self._lock:
            return self._serve(message)

    def _serve(self, message: Message) -> RecordDict:
        step = message.metadata.message_type
        try:
            spec = spec_of(message.content)
        except JobSpecError as err:
            return self._refused(None, JobRefusedError(self.gate.partner_id, str(err)))
        try:
            if step not in _UNGATED:
                admission = self.gate.admit(claims_of(spec, flower_app=RUNNING_APP.get()))
                self._record_step(
                    spec, step, server_round_of(message.content), admission.policy.purpose.value
                )
        except JobRefusedError as refusal:
            return self._refused(spec, refusal)
        reply = self._handle(message)
        self._record_charge(spec, reply.content)
        return reply.content

    def _record_step(self, spec: JobSpec, step: str, server_round: int, purpose: str) -> None:
        try:
            self.audit.record(
                EventType.JOB_ROUND,
                job_id=spec.job_id,
                purpose=purpose,
                policy_hash=spec.policy_hash,
                details={"step": step, "round": server_round},
            )
        except (AuditError, OSError) as err:
            # Fail closed: a step the node cannot account for in its audit trail does not run.
            _LOG.exception("audit trail unavailable")
            raise self.gate.refuse("the node's audit trail is unavailable") from err

    def _record_charge(self, spec: JobSpec, content: RecordDict) -> None:
        if RecordKey.METRICS not in content or message_epsilon(content) is None:
            return
        self.audit.safe_record(
            EventType.BUDGET_CHARGED,
            job_id=spec.job_id,
            purpose=spec.purpose.value,
            policy_hash=spec.policy_hash,
            epsilon=message_epsilon(content),
        )

    def _refused(self, spec: JobSpec | None, refusal: JobRefusedError) -> RecordDict:
        fields = {"job_id": spec.job_id, "policy_hash": spec.policy_hash} if spec is not None else {}
        self.audit.safe_record(EventType.JOB_REFUSED, details={"rule": _rule(refusal.reason)}, **fields)
        _LOG.warning("%s", refusal)
        return Refusal(refusal.partner_id, refusal.reason).to_content()


def message_epsilon(content: RecordDict) -> float | None:
    """The ε a train reply's metrics report (the node's accountant's figure), if any."""
    value = content[RecordKey.METRICS].get(TrainKey.EPSILON) if RecordKey.METRICS in content else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rule(reason: str) -> str:
    # A short token for the audit log's details (free text never enters it).
    for token, words in (
        ("officer_signature", ("signed", "officer")),
        ("policy", ("policy",)),
        ("budget", ("budget", "ε")),
        ("consent", ("consent",)),
        ("audit", ("audit",)),
    ):
        if any(word in reason for word in words):
            return token
    return "job_spec"
