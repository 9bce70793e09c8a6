"""Purpose and data-category taxonomy: fideslang's vocabulary, extended for loyalty federations.

fideslang (ethyca/fideslang, Apache-2.0) is the open privacy taxonomy used by Fides. Its 3.x
releases pin ``pydantic<2.13`` and loyalfed runs pydantic 2.14, so the vocabulary is taken here
without the dependency: the keys below are fideslang 3.1.4's ``default_taxonomy`` keys, plus the
four loyalfed purposes of DESIGN.md, each declared as a child of the fideslang use it refines.

Columns of the data contract map to data categories; a policy allows categories (and columns),
and a column whose category is sensitive may only be read for fairness evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.purpose import Purpose

__all__ = [
    "COLUMN_CATEGORIES",
    "DATA_CATEGORIES",
    "DATA_USES",
    "SENSITIVE_CATEGORIES",
    "DataUse",
    "category_of",
    "data_use",
    "is_sensitive",
]


@dataclass(frozen=True)
class DataUse:
    """A data use (fideslang term for a processing purpose) and where it sits in the tree."""

    key: str
    parent: str | None
    description: str
    shares_with_other_handler: bool = False


# fideslang 3.1.4 default_taxonomy/data_uses.py (subset that loyalty programmes use).
_FIDESLANG_USES = (
    DataUse("analytics", None, "Analytics and reporting."),
    DataUse("analytics.reporting", "analytics", "Statistics and reporting."),
    DataUse("marketing", None, "Marketing activities."),
    DataUse("marketing.advertising", "marketing", "Advertising."),
    DataUse("marketing.advertising.profiling", "marketing.advertising", "Profiling for advertising."),
    DataUse("marketing.advertising.third_party", "marketing.advertising", "Third-party advertising."),
    DataUse("personalize", None, "Personalisation."),
    DataUse("personalize.profiling", "personalize", "Profiling for personalisation."),
    DataUse("essential", None, "Essential service operation."),
    DataUse("essential.service", "essential", "Providing the service."),
    DataUse("third_party_sharing", None, "Sharing with third parties."),
    DataUse("train_ai_system", None, "Training an AI system."),
)

# loyalfed's purposes (DESIGN.md), children of the fideslang uses they refine.
_LOYALFED_USES = (
    DataUse(Purpose.CHURN_MODEL.value, "analytics", "Federated training of a member churn model."),
    DataUse(Purpose.PROPENSITY_MODEL.value, "analytics", "Federated purchase-propensity model."),
    DataUse(
        Purpose.CROSS_BRAND_MATCHING.value,
        "marketing",
        "Finding members shared with a partner brand (PSI).",
        shares_with_other_handler=True,
    ),
    DataUse(
        Purpose.POINTS_INTERCHANGE.value,
        "essential.service",
        "Converting loyalty points between partner brands.",
        shares_with_other_handler=True,
    ),
)

DATA_USES: dict[str, DataUse] = {use.key: use for use in (*_FIDESLANG_USES, *_LOYALFED_USES)}

# fideslang 3.1.4 default_taxonomy/data_categories.py keys loyalfed's columns fall under.
DATA_CATEGORIES = frozenset(
    {
        "user.unique_id.pseudonymous",
        "user.contact.phone_number",
        "user.contact.email",
        "user.account",
        "user.behavior.purchase_history",
        "user.demographic.age_range",
        "user.demographic.date_of_birth",
        "user.demographic.gender",
        "user.financial",
        "user.health_and_medical",
        "user.location.imprecise",
        "user.childrens",
    }
)

# Sensitive personal information: PIPL Art. 28 (medical health, financial accounts, whereabouts,
# minors under 14, ...) and GDPR Art. 9 special categories (health). Demographics are not GDPR
# special categories but DESIGN.md treats them as sensitive: fairness checks only, with consent.
SENSITIVE_CATEGORIES = frozenset(
    {
        "user.demographic.age_range",
        "user.demographic.date_of_birth",
        "user.demographic.gender",
        "user.financial",
        "user.health_and_medical",
        "user.childrens",
    }
)

# table -> column -> category, for the data contract of DESIGN.md.
COLUMN_CATEGORIES: dict[str, dict[str, str]] = {
    "members": {
        "member_id": "user.unique_id.pseudonymous",
        "phone": "user.contact.phone_number",
        "email": "user.contact.email",
        "joined_at": "user.account",
        "tier": "user.account",
        "points_balance": "user.account",
        "age_band": "user.demographic.age_range",
        "birth_date": "user.demographic.date_of_birth",
        "gender": "user.demographic.gender",
        "income_band": "user.financial",
    },
    "transactions": {
        "member_id": "user.unique_id.pseudonymous",
        "timestamp": "user.behavior.purchase_history",
        "amount": "user.behavior.purchase_history",
        "quantity": "user.behavior.purchase_history",
        "store_id": "user.location.imprecise",
        "category": "user.behavior.purchase_history",
        "discount": "user.behavior.purchase_history",
        "basket_id": "user.behavior.purchase_history",
    },
    "campaigns": {
        "member_id": "user.unique_id.pseudonymous",
        "campaign_id": "user.behavior.purchase_history",
        "start_date": "user.behavior.purchase_history",
        "end_date": "user.behavior.purchase_history",
        "campaign_type": "user.behavior.purchase_history",
        "redeemed_at": "user.behavior.purchase_history",
    },
}


def data_use(key: str) -> DataUse:
    """The data use named ``key`` or ``ValueError`` naming the known ones."""
    try:
        return DATA_USES[key]
    except KeyError:
        raise ValueError(f"unknown data use {key!r}; known: {', '.join(sorted(DATA_USES))}") from None


def category_of(table: str, column: str) -> str:
    """The data category of ``table.column``; unknown columns are refused, not guessed."""
    try:
        return COLUMN_CATEGORIES[table][column]
    except KeyError:
        raise ValueError(f"column {table}.{column} has no data category in the taxonomy") from None


def is_sensitive(category: str) -> bool:
    """Whether ``category`` (or one of its ancestors) is sensitive personal information."""
    parts = category.split(".")
    return any(".".join(parts[:i]) in SENSITIVE_CATEGORIES for i in range(1, len(parts) + 1))
