"""Role × action matrix: every combination, allowed and forbidden, plus own-partner scoping."""

from __future__ import annotations

import pytest

from policies.roles import PARTNER_SCOPED, Action, Actor, AuthorizationError, Role, authorize, is_authorized

ALLOWED: dict[Role, set[Action]] = {
    Role.ANALYST: {Action.POLICY_DRAFT, Action.POLICY_READ, Action.JOB_LAUNCH},
    Role.DATA_OFFICER: {
        Action.POLICY_READ,
        Action.POLICY_APPROVE,
        Action.POLICY_REJECT,
        Action.CONSENT_IMPORT,
        Action.CONSENT_WITHDRAW,
        Action.CONSENT_EXPORT,
        Action.CONSENT_ERASE,
        Action.BUDGET_SET,
        Action.RECORDS_GENERATE,
    },
    Role.AUDITOR: {Action.POLICY_READ, Action.AUDIT_READ, Action.AUDIT_VERIFY, Action.RECORDS_GENERATE},
    Role.NODE: {Action.POLICY_READ, Action.JOB_PARTICIPATE},
    Role.FEDERATION_ADMIN: {Action.POLICY_READ},
    Role.PARTNER_OPERATOR: {Action.POLICY_READ},
    Role.JOB_RUN: set(),
}
OWN = "freshmart-north"


def _actor(role: Role) -> Actor:
    return Actor(role, OWN if role in (Role.DATA_OFFICER, Role.NODE, Role.PARTNER_OPERATOR) else None)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_role_action_matrix(role: Role, action: Action) -> None:
    expected = action in ALLOWED[role]
    actor = _actor(role)
    assert is_authorized(actor, action, partner=OWN) is expected
    if expected:
        authorize(actor, action, partner=OWN)
    else:
        with pytest.raises(AuthorizationError, match=action.value):
            authorize(actor, action, partner=OWN)


@pytest.mark.parametrize("action", sorted(PARTNER_SCOPED))
def test_partner_scoped_actions_forbidden_for_another_partner(action: Action) -> None:
    for role in (Role.DATA_OFFICER, Role.NODE):
        assert not is_authorized(Actor(role, OWN), action, partner="freshmart-south")
        assert not is_authorized(Actor(role, OWN), action, partner=None)


def test_data_officer_cannot_approve_for_another_partner() -> None:
    with pytest.raises(AuthorizationError, match="freshmart-south"):
        authorize(Actor(Role.DATA_OFFICER, OWN), Action.POLICY_APPROVE, partner="freshmart-south")


def test_actor_parse_and_partner_required() -> None:
    assert Actor.parse("data_officer:careplus") == Actor(Role.DATA_OFFICER, "careplus")
    assert Actor.parse("data-officer:careplus") == Actor(Role.DATA_OFFICER, "careplus")
    assert Actor.parse("analyst") == Actor(Role.ANALYST)
    assert str(Actor.parse("node:fuelgo")) == "node:fuelgo"
    with pytest.raises(ValueError, match="PARTNER"):
        Actor.parse("data_officer")
    with pytest.raises(ValueError, match="unknown role"):
        Actor.parse("admin")
