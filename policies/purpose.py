"""Processing purposes a member can consent to, and the scopes a consent can cover.

The purpose names are the wire and file vocabulary of DESIGN.md (consents files, policies,
PSI sessions, training jobs). The taxonomy that relates them to fideslang's data uses lives in
``policies.taxonomy``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CONSENT_SCOPE_FEDERATION",
    "CONSENT_SCOPE_OWN",
    "Purpose",
    "parse_purpose",
    "purpose_of_training_task",
]


class Purpose(StrEnum):
    """A processing purpose: what a member's data may be used for."""

    CHURN_MODEL = "analytics.churn_model"
    PROPENSITY_MODEL = "analytics.propensity_model"
    CROSS_BRAND_MATCHING = "marketing.cross_brand_matching"
    POINTS_INTERCHANGE = "loyalty.points_interchange"


# The purpose each training task (``models.task.Task``'s values) processes member data for: the
# coordinator states it in the job, the node derives it itself and refuses a job that disagrees.
_TRAINING_TASK_PURPOSES = {"churn": Purpose.CHURN_MODEL, "propensity": Purpose.PROPENSITY_MODEL}


def purpose_of_training_task(task: str) -> Purpose:
    """The consent purpose of training task ``task`` ("churn" or "propensity")."""
    try:
        return _TRAINING_TASK_PURPOSES[str(task)]
    except KeyError:
        known = ", ".join(sorted(_TRAINING_TASK_PURPOSES))
        raise ValueError(f"unknown training task {task!r}; known: {known}") from None


# Consent ``scope`` column: "own" (the partner's own use), "federation" (any partner of the
# federation), or a ";"-separated list of named partner ids ("carepl;fuelgo").
CONSENT_SCOPE_OWN = "own"
CONSENT_SCOPE_FEDERATION = "federation"


def parse_purpose(value: str) -> Purpose:
    """Return the purpose named by ``value`` or raise ``ValueError`` listing the known ones."""
    try:
        return Purpose(value.strip())
    except ValueError:
        known = ", ".join(p.value for p in Purpose)
        raise ValueError(f"unknown purpose {value!r}; known purposes: {known}") from None
