"""`loyalfed train`'s audit trail, appended as the job happens, not when the command ends.

A job killed in the middle must leave a truthful log: what was reserved and started, and every
round that finished, is already in it. The events, in order, each appended when it happens:

- ``budget.reserved`` once the ledger has reserved the job's ε on every partner (one transaction);
- ``job.started`` right after, when training begins;
- ``job.round`` after each aggregated round; ``job.refused`` when a node refuses (its partner);
- ``budget.charged`` per partner once the ledger is settled from the node's own accountant;
- ``job.finished`` and ``model.published`` once the model is written (``command_lineage``);
- ``job.refused`` (before any start) or ``job.failed`` (after) when the command ends in an error.

Events carry the job id, purpose, policy hash, ε and counts — never a member identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from audit.lineage_event import EventType
from coordinator.budget_ledger import BudgetLedger, ReservationOwner
from coordinator.job_outcome import RoundReport
from coordinator.job_progress import NoProgress, RoundCallback
from loyalfed.cli.audit_trail import AuditStep
from protocol import JobSpec, PrivacySpentReply, Refusal

__all__ = ["AuditedLedger", "JobTrail"]


class JobTrail(NoProgress):
    """The job's progress sink: appends each round, refusal and settlement to the audit log now."""

    def __init__(
        self, step: AuditStep, job: JobSpec, *, policy_hash: str | None, on_round: RoundCallback
    ) -> None:
        self._step, self._on_round = step, on_round
        self.common: dict[str, Any] = {
            "job_id": job.job_id,
            "purpose": str(job.purpose),
            "policy_hash": policy_hash,
        }
        step.update(**self.common)

    def reserved(self, partners: Sequence[str], *, epsilon: float, delta: float) -> None:
        self._step.emit(
            EventType.BUDGET_RESERVED, **self.common, partners=tuple(partners), epsilon=epsilon, delta=delta
        )
        self._step.emit(EventType.JOB_STARTED, **self.common, partners=tuple(partners), epsilon=epsilon)
        self._step.refused = EventType.JOB_FAILED  # from here on an error ends a job that ran

    def round_finished(self, report: RoundReport) -> None:
        self._step.emit(
            EventType.JOB_ROUND,
            **self.common,
            epsilon=report.max_epsilon,
            details={
                "round": report.server_round,
                "nodes_ok": report.nodes_ok,
                "nodes_failed": report.nodes_failed,
            },
        )
        self._on_round(report)

    def node_refused(self, job_id: str, refusal: Refusal) -> None:
        # The node's reason is free text and stays out of the log; the partner and the job go in.
        self._step.emit(EventType.JOB_REFUSED, **self.common, partner=refusal.partner_id)

    def budget_settled(self, job_id: str, spent: dict[str, PrivacySpentReply]) -> None:
        for partner, reply in sorted(spent.items()):
            self._step.emit(
                EventType.BUDGET_CHARGED,
                **self.common,
                partner=partner,
                epsilon=reply.epsilon,
                delta=reply.delta,
                details={"steps": reply.steps},
            )


class AuditedLedger(BudgetLedger):
    """The CLI's budget ledger: a successful reservation is reported to the job's trail at once."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.trail: JobTrail | None = None

    def reserve(
        self,
        partner_ids: Sequence[str],
        *,
        job_id: str,
        purpose: str,
        epsilon: float,
        delta: float,
        now: datetime | None = None,
        owner: ReservationOwner | None = None,
    ) -> None:
        super().reserve(
            partner_ids, job_id=job_id, purpose=purpose, epsilon=epsilon, delta=delta, now=now, owner=owner
        )
        if self.trail is not None:
            self.trail.reserved(sorted(set(partner_ids)), epsilon=epsilon, delta=delta)
