"""What the node's own accountant charged to one job: the figure the coordinator's ledger settles from.

A member's ε for a job is the larger of its training charge and its held-out release (the two
datasets are disjoint: parallel composition), at the smallest δ the job trained with, which gives
the largest ε. Asked during the job (``query.privacy_spent``) or after it ended unsettled (the
coordinator's heartbeat answer), the node answers the same figure from the same accountant.
"""

from __future__ import annotations

from participant_node.training.heldout_release import heldout_dataset
from participant_node.training.privacy_accountant import NodePrivacyAccountant
from protocol import PrivacySpentReply

__all__ = ["job_spend"]


def job_spend(
    accountant: NodePrivacyAccountant, *, partner_id: str, job_id: str, purpose: str, default_delta: float
) -> PrivacySpentReply:
    """The job's (ε, δ, steps) on ``partner_id`` by ``accountant``; 0 steps, ε 0 if it never trained."""
    datasets = (partner_id, heldout_dataset(partner_id))
    entries = accountant.entries(dataset=partner_id, purpose=purpose, job_id=job_id)
    every = [e for d in datasets for e in accountant.entries(dataset=d, purpose=purpose, job_id=job_id)]
    delta = min((e.delta for e in every), default=default_delta)
    epsilon = max(
        accountant.epsilon(dataset=dataset, purpose=purpose, delta=delta, job_id=job_id)
        for dataset in datasets
    )
    return PrivacySpentReply(partner_id, job_id, epsilon, delta, sum(e.steps for e in entries))
