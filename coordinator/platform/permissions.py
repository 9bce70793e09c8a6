"""Who may do what through the coordinator API: the role × action matrix, and organisation scope.

Every route authorises one ``ApiAction``. Roles come from ``policies.roles.Role``; a principal is
bound to one organisation, and organisation-scoped actions (a data officer's decision, a node's
heartbeat) are allowed only on that organisation's resources. A job-run credential reports on its
own job only. Separation of duties (DESIGN.md): the analyst who launches a job cannot sign its
approval; only a partner's own data officer can.
"""

from __future__ import annotations

from enum import StrEnum

from coordinator.platform.errors import ForbiddenError
from coordinator.platform.principals import Principal
from policies.roles import Role

__all__ = ["MATRIX", "ORGANISATION_SCOPED", "ApiAction", "authorize", "is_allowed"]


class ApiAction(StrEnum):
    ME_READ = "me.read"
    TOKEN_ISSUE = "token.issue"
    ORGANISATION_CREATE = "organisation.create"
    ORGANISATION_READ = "organisation.read"
    OFFICER_KEY_REGISTER = "officer_key.register"
    NODE_REGISTER = "node.register"
    NODE_HEARTBEAT = "node.heartbeat"
    NODE_READ = "node.read"
    NODE_AUDIT_RESET = "node.audit_reset"
    DATASET_REGISTER = "dataset.register"
    DATASET_READ = "dataset.read"
    POLICY_DRAFT = "policy.draft"
    POLICY_READ = "policy.read"
    DECISION_RECORD = "decision.record"
    JOB_SUBMIT = "job.submit"
    JOB_READ = "job.read"
    JOB_STOP = "job.stop"
    JOB_REPORT = "job.report"
    BUDGET_READ = "budget.read"
    BUDGET_SET = "budget.set"
    MODEL_PUBLISH = "model.publish"
    MODEL_READ = "model.read"
    MODEL_DOWNLOAD = "model.download"
    AUDIT_READ = "audit.read"
    AGREEMENT_DRAFT = "agreement.draft"
    AGREEMENT_SIGN = "agreement.sign"
    AGREEMENT_READ = "agreement.read"
    SETTLEMENT_REPORT = "settlement.report"
    SETTLEMENT_READ = "settlement.read"
    PSI_RUN_REPORT = "psi_run.report"
    PSI_RUN_READ = "psi_run.read"
    SUBJECT_REQUEST_REPORT = "subject_request.report"
    SUBJECT_REQUEST_READ = "subject_request.read"
    CONSENT_COUNT_REPORT = "consent_count.report"
    CONSENT_COUNT_READ = "consent_count.read"


_PEOPLE = frozenset(
    {Role.FEDERATION_ADMIN, Role.DATA_OFFICER, Role.ANALYST, Role.AUDITOR, Role.PARTNER_OPERATOR, Role.NODE}
)
_READ = frozenset(
    {
        ApiAction.ME_READ,
        ApiAction.ORGANISATION_READ,
        ApiAction.NODE_READ,
        ApiAction.DATASET_READ,
        ApiAction.POLICY_READ,
        ApiAction.JOB_READ,
        ApiAction.BUDGET_READ,
        ApiAction.MODEL_READ,
        ApiAction.AUDIT_READ,
        ApiAction.AGREEMENT_READ,
        ApiAction.SETTLEMENT_READ,
        ApiAction.PSI_RUN_READ,
    }
)

MATRIX: dict[ApiAction, frozenset[Role]] = {action: _PEOPLE for action in _READ} | {
    ApiAction.TOKEN_ISSUE: frozenset({Role.FEDERATION_ADMIN}),
    ApiAction.ORGANISATION_CREATE: frozenset({Role.FEDERATION_ADMIN}),
    ApiAction.OFFICER_KEY_REGISTER: frozenset({Role.DATA_OFFICER}),
    ApiAction.NODE_REGISTER: frozenset({Role.NODE}),
    ApiAction.NODE_HEARTBEAT: frozenset({Role.NODE}),
    ApiAction.NODE_AUDIT_RESET: frozenset({Role.DATA_OFFICER}),
    ApiAction.DATASET_REGISTER: frozenset({Role.NODE}),
    ApiAction.POLICY_DRAFT: frozenset({Role.ANALYST}),
    ApiAction.DECISION_RECORD: frozenset({Role.DATA_OFFICER}),
    ApiAction.JOB_SUBMIT: frozenset({Role.ANALYST}),
    ApiAction.JOB_STOP: frozenset({Role.ANALYST, Role.FEDERATION_ADMIN}),
    ApiAction.JOB_REPORT: frozenset({Role.JOB_RUN}),
    ApiAction.BUDGET_SET: frozenset({Role.DATA_OFFICER}),
    ApiAction.MODEL_PUBLISH: frozenset({Role.JOB_RUN}),
    # Weights are an artefact of every partner's data: analysts, auditors and the admin only.
    ApiAction.MODEL_DOWNLOAD: frozenset({Role.ANALYST, Role.AUDITOR, Role.FEDERATION_ADMIN}),
    # A partner's officer or operator drafts an agreement their partner is party to; only officers
    # sign (with their own key); only the partner's node reports its settlement totals and PSI runs.
    ApiAction.AGREEMENT_DRAFT: frozenset({Role.DATA_OFFICER, Role.PARTNER_OPERATOR}),
    ApiAction.AGREEMENT_SIGN: frozenset({Role.DATA_OFFICER}),
    ApiAction.SETTLEMENT_REPORT: frozenset({Role.NODE}),
    ApiAction.PSI_RUN_REPORT: frozenset({Role.NODE}),
    # Data-subject requests: the partner's node reports them; its data officer handles them (their
    # own partner's only, by scope) and auditors check them; nobody else needs them.
    ApiAction.SUBJECT_REQUEST_REPORT: frozenset({Role.NODE}),
    ApiAction.SUBJECT_REQUEST_READ: frozenset({Role.DATA_OFFICER, Role.AUDITOR, Role.FEDERATION_ADMIN}),
    # Coarsened consent counts: the node reports its own; people plan with them (a node does not
    # read other partners' counts).
    ApiAction.CONSENT_COUNT_REPORT: frozenset({Role.NODE}),
    ApiAction.CONSENT_COUNT_READ: _PEOPLE - {Role.NODE},
}

# Actions on a partner's own resources: the principal's organisation must be that partner.
ORGANISATION_SCOPED = frozenset(
    {
        ApiAction.OFFICER_KEY_REGISTER,
        ApiAction.NODE_REGISTER,
        ApiAction.NODE_HEARTBEAT,
        ApiAction.NODE_AUDIT_RESET,
        ApiAction.DATASET_REGISTER,
        ApiAction.DECISION_RECORD,
        ApiAction.BUDGET_SET,
        ApiAction.AGREEMENT_DRAFT,
        ApiAction.AGREEMENT_SIGN,
        ApiAction.SETTLEMENT_REPORT,
        ApiAction.PSI_RUN_REPORT,
        ApiAction.SUBJECT_REQUEST_REPORT,
        ApiAction.CONSENT_COUNT_REPORT,
    }
)
# Actions of a job-run credential: only on the job it was minted for.
JOB_SCOPED = frozenset({ApiAction.JOB_REPORT, ApiAction.MODEL_PUBLISH})


def is_allowed(
    principal: Principal, action: ApiAction, *, organisation: str | None = None, job_id: str | None = None
) -> bool:
    if principal.role not in MATRIX[action]:
        return False
    if action in ORGANISATION_SCOPED and (organisation is None or organisation != principal.organisation):
        return False
    return not (action in JOB_SCOPED and (job_id is None or job_id != principal.job_id))


def authorize(
    principal: Principal, action: ApiAction, *, organisation: str | None = None, job_id: str | None = None
) -> None:
    """Raise ``ForbiddenError`` (403) unless ``principal`` may take ``action`` there."""
    if not is_allowed(principal, action, organisation=organisation, job_id=job_id):
        where = f" for organisation {organisation}" if action in ORGANISATION_SCOPED and organisation else ""
        raise ForbiddenError(f"role {principal.role.value} may not {action.value}{where}")
