"""Settling the privacy-budget ledger from the nodes' own accountants, once per job.

A node charges its accountant before it computes an update, so a reply that is lost, arrives after
the round closed, or belongs to a round that is then aborted was still paid for. At the end of a job
(finished, failed, refused or stopped) the coordinator therefore asks every described node what its
accountant charged to the job (``query.privacy_spent``) and settles each partner's reservation with
that figure: the ledger equals the nodes' accountants. A node that does not answer keeps its whole
reservation (never less than it may have spent), held until it reports: ``BudgetLedger.recover`` on
the local ledger, the node's next heartbeat on the coordinator service (``coordinator.budget_recovery``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from coordinator.budget_ledger import BudgetLedger
from protocol import (
    JobSpec,
    MalformedReplyError,
    PrivacySpentReply,
    QueryAction,
    RecordKey,
    job_config_record,
    query_type,
)

__all__ = ["collect_spent", "settle_from_nodes"]

_log = logging.getLogger(__name__)


def collect_spent(grid: Grid, partners: Mapping[int, str], job: JobSpec) -> dict[str, PrivacySpentReply]:
    """Ask each node (id -> partner) what its accountant charged to ``job``; keep the valid answers."""
    content = RecordDict({RecordKey.CONFIG: job_config_record(job)})
    kind = query_type(QueryAction.PRIVACY_SPENT)
    messages = [Message(content, dst_node_id=node, message_type=kind) for node in partners]
    spent: dict[str, PrivacySpentReply] = {}
    for reply in grid.send_and_receive(messages, timeout=job.round_timeout_s):
        partner = partners.get(reply.metadata.src_node_id)
        if partner is None:
            continue  # not a node of this job
        if reply.has_error():
            _log.warning("privacy spent: node %s did not answer: %s", partner, reply.error.reason)
            continue
        try:
            answer = PrivacySpentReply.parse(reply.content)
        except MalformedReplyError as err:
            _log.warning("privacy spent: node %s sent a malformed reply: %s", partner, err)
            continue
        if (answer.partner_id, answer.job_id) != (partner, job.job_id):
            _log.warning(
                "privacy spent: node %s answered for %s/%s", partner, answer.partner_id, answer.job_id
            )
            continue
        spent[partner] = answer
    return spent


def settle_from_nodes(
    grid: Grid, partners: Mapping[int, str], job: JobSpec, ledger: BudgetLedger | None
) -> dict[str, PrivacySpentReply]:
    """Collect every node's spent ε for ``job`` and settle its reservation on ``ledger`` with it."""
    spent = collect_spent(grid, partners, job)
    for partner in sorted(set(partners.values()) - set(spent)):
        _log.warning("job %s: %s did not report its spent ε; its reservation is kept", job.job_id, partner)
    if ledger is not None:
        for partner, answer in sorted(spent.items()):
            ledger.settle(partner, job_id=job.job_id, epsilon_spent=answer.epsilon)
    return spent
