"""``evaluate(policy, request) -> Decision``: may this use of data go ahead under this policy?

Pure: no database, no files. The coordinator calls it before launching a job; a node calls it
before answering a request (PSI, a training round) with what *it* is about to read and send.
Every violated rule is reported, each naming the rule so an operator knows what to fix.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from policies.jurisdiction import Jurisdiction, jurisdiction_of_region
from policies.policy import DataUsePolicy
from policies.purpose import Purpose

__all__ = ["Decision", "Rule", "UseRequest", "Violation", "evaluate", "is_cross_border", "transfer_area"]


class Rule(StrEnum):
    """The rules ``evaluate`` checks (names used in docs/compliance.md)."""

    PURPOSE_LIMITATION = "purpose_limitation"  # PIPL Art. 6 / GDPR Art. 5(1)(b)
    PARTNER_IN_POLICY = "partner_in_policy"  # PIPL Art. 20, 23 / GDPR Art. 26
    DATA_MINIMISATION = "data_minimisation"  # PIPL Art. 6 / GDPR Art. 5(1)(c)
    SENSITIVE_DATA = "sensitive_data"  # PIPL Art. 28-29 / GDPR Art. 9
    PRIVACY_BUDGET = "privacy_budget"  # DESIGN.md: ε/δ cap per job
    MIN_AGGREGATION = "min_aggregation"  # DESIGN.md: aggregates over at least k members
    CROSS_BORDER = "cross_border"  # PIPL Art. 38-39 / GDPR Art. 44-46


class UseRequest(BaseModel):
    """What a job or a node step is about to do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    purpose: Purpose
    partners: tuple[str, ...] = Field(min_length=1)
    columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    fairness_columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    epsilon: float = Field(default=0.0, ge=0)
    delta: float = Field(default=0.0, ge=0, lt=1)
    min_aggregation_k: int = Field(default=20, ge=1)
    partner_regions: dict[str, str] = Field(default_factory=dict)
    destination_region: str | None = None


class Violation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    rule: Rule
    message: str


class Decision(BaseModel):
    """The outcome: allowed, or the list of violated rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    allowed: bool
    policy_hash: str
    violations: tuple[Violation, ...] = ()

    def message(self) -> str:
        if self.allowed:
            return f"allowed under policy {self.policy_hash[:12]}"
        return "; ".join(f"{v.rule.value}: {v.message}" for v in self.violations)


def transfer_area(region: str) -> str:
    """The legal area a region belongs to: ``CN`` for CN-*, ``EU`` for the EEA, else the code."""
    jurisdiction = jurisdiction_of_region(region)
    return jurisdiction.value if jurisdiction else region.strip().upper().split("-")[0]


def is_cross_border(source_region: str, destination_region: str) -> bool:
    """Whether sending from ``source_region`` to ``destination_region`` leaves the source's area."""
    return transfer_area(source_region) != transfer_area(destination_region)


def evaluate(policy: DataUsePolicy, request: UseRequest) -> Decision:
    """Check ``request`` against ``policy``; pure and deterministic."""
    violations = [
        *_purpose_and_partners(policy, request),
        *_columns(policy, request),
        *_budget_and_k(policy, request),
        *_cross_border(policy, request),
    ]
    return Decision(allowed=not violations, policy_hash=policy.content_hash(), violations=tuple(violations))


def _purpose_and_partners(policy: DataUsePolicy, request: UseRequest) -> list[Violation]:
    found = []
    if request.purpose != policy.purpose:
        found.append(
            Violation(
                rule=Rule.PURPOSE_LIMITATION,
                message=f"request purpose {request.purpose.value} is not the policy's {policy.purpose.value}",
            )
        )
    outside = sorted(set(request.partners) - set(policy.partners))
    if outside:
        found.append(Violation(rule=Rule.PARTNER_IN_POLICY, message=f"partners not in the policy: {outside}"))
    return found


def _columns(policy: DataUsePolicy, request: UseRequest) -> list[Violation]:
    found = []
    for table, columns in request.columns.items():
        extra = sorted(set(columns) - set(policy.columns.get(table, ())))
        if extra:
            found.append(
                Violation(rule=Rule.DATA_MINIMISATION, message=f"{table} columns outside the policy: {extra}")
            )
    for table, columns in request.fairness_columns.items():
        extra = sorted(set(columns) - set(policy.sensitive_columns.get(table, ())))
        if extra:
            found.append(
                Violation(
                    rule=Rule.SENSITIVE_DATA,
                    message=f"{table} sensitive columns not allowed for fairness evaluation: {extra}",
                )
            )
    return found


def _budget_and_k(policy: DataUsePolicy, request: UseRequest) -> list[Violation]:
    found = []
    if request.epsilon > policy.privacy.epsilon or request.delta > policy.privacy.delta:
        found.append(
            Violation(
                rule=Rule.PRIVACY_BUDGET,
                message=f"(ε={request.epsilon}, δ={request.delta}) exceeds the policy cap "
                f"(ε={policy.privacy.epsilon}, δ={policy.privacy.delta})",
            )
        )
    if request.min_aggregation_k < policy.min_aggregation_k:
        found.append(
            Violation(
                rule=Rule.MIN_AGGREGATION,
                message=f"k={request.min_aggregation_k} is below the minimum {policy.min_aggregation_k}",
            )
        )
    return found


def _cross_border(policy: DataUsePolicy, request: UseRequest) -> list[Violation]:
    destination = request.destination_region or policy.coordinator_region
    found = []
    for partner in sorted(request.partners):
        region = request.partner_regions.get(partner)
        if region is None:
            continue
        if region not in policy.regions and transfer_area(region) not in {
            transfer_area(r) for r in policy.regions
        }:
            found.append(
                Violation(
                    rule=Rule.CROSS_BORDER, message=f"{partner} is in region {region}, outside the policy"
                )
            )
        elif is_cross_border(region, destination) and not policy.cross_border.allowed:
            law = (
                "PIPL Art. 38-39" if jurisdiction_of_region(region) == Jurisdiction.CN else "GDPR Art. 44-46"
            )
            found.append(
                Violation(
                    rule=Rule.CROSS_BORDER,
                    message=f"{partner} ({region}) would send to {destination} but the policy does not allow "
                    f"cross-border transfer ({law})",
                )
            )
    return found
