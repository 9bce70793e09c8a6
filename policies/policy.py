"""Policy-as-code: a job's data-use policy, validated, versioned and content-hashed.

A policy is written as YAML or JSON by an analyst, parsed once into a frozen pydantic model
(``extra="forbid"``: an unknown key is an error, not a silently ignored wish) and identified by the
sha256 of its canonical JSON. Data officers approve a *hash*: any change to the policy, however
small, is a new hash and voids every approval (issue 5 item 3).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from policies.consent_record import LawfulBasis
from policies.errors import PolicyError
from policies.jurisdiction import (
    DEFAULT_RETENTION_DAYS,
    Jurisdiction,
    allowed_lawful_bases,
    jurisdiction_of_region,
)
from policies.purpose import Purpose
from policies.taxonomy import category_of, data_use, is_sensitive

__all__ = [
    "POLICY_SCHEMA_VERSION",
    "CrossBorderTransfer",
    "DataUsePolicy",
    "ImpactAssessment",
    "PolicyFileError",
    "PrivacyBudget",
    "TransferMechanism",
    "load_policy",
    "parse_policy",
]

POLICY_SCHEMA_VERSION = 1
PartnerId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
_FROZEN = ConfigDict(frozen=True, extra="forbid")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PolicyFileError(PolicyError):
    """A policy file cannot be read or does not validate; the message names the file and field."""


class TransferMechanism(StrEnum):
    """Legal mechanisms for a cross-border transfer."""

    CAC_SECURITY_ASSESSMENT = "cac_security_assessment"  # PIPL Art. 38(1), Art. 40
    PI_PROTECTION_CERTIFICATION = "pi_protection_certification"  # PIPL Art. 38(2)
    CN_STANDARD_CONTRACT = "cn_standard_contract"  # PIPL Art. 38(3)
    ADEQUACY_DECISION = "adequacy_decision"  # GDPR Art. 45
    STANDARD_CONTRACTUAL_CLAUSES = "standard_contractual_clauses"  # GDPR Art. 46(2)(c)
    BINDING_CORPORATE_RULES = "binding_corporate_rules"  # GDPR Art. 47


class PrivacyBudget(BaseModel):
    """The (ε, δ) cap of differentially private training under this policy."""

    model_config = _FROZEN
    epsilon: float = Field(gt=0, le=50)
    delta: float = Field(gt=0, lt=1)


class CrossBorderTransfer(BaseModel):
    """Whether data or artefacts may leave a partner's region, and under which mechanism."""

    model_config = _FROZEN
    allowed: bool = False
    mechanism: TransferMechanism | None = None

    @model_validator(mode="after")
    def _mechanism_when_allowed(self) -> CrossBorderTransfer:
        # PIPL Art. 38 / GDPR Art. 44-46: a transfer needs a legal mechanism, not just a wish.
        if self.allowed and self.mechanism is None:
            raise ValueError("cross_border.allowed needs a mechanism (PIPL Art. 38 / GDPR Art. 44-46)")
        return self


class ImpactAssessment(BaseModel):
    """A completed personal-information protection impact assessment (PIPL 55-56 / GDPR 35 DPIA)."""

    model_config = _FROZEN
    reference: str = Field(min_length=1)
    completed_on: date


class DataUsePolicy(BaseModel):
    """A job's data-use policy: what may be used, by whom, how much privacy it may cost, where."""

    model_config = _FROZEN

    schema_version: int = POLICY_SCHEMA_VERSION
    policy_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    title: str = Field(min_length=1)
    purpose: Purpose
    lawful_basis: LawfulBasis = LawfulBasis.CONSENT
    partners: tuple[PartnerId, ...] = Field(min_length=1)
    regions: tuple[str, ...] = ("CN",)
    coordinator_region: str = "CN"
    columns: dict[str, tuple[str, ...]]
    sensitive_columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    privacy: PrivacyBudget
    min_aggregation_k: int = Field(default=20, ge=2)
    data_retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0)
    artefact_retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0)
    cross_border: CrossBorderTransfer = CrossBorderTransfer()
    impact_assessment: ImpactAssessment | None = None
    joint_handling_agreement: str | None = None
    automated_decisions: bool = False
    automated_decision_opt_out: bool = False
    notice_version: str | None = None
    notice_effective_at: datetime | None = None
    # The Flower Apps that may run on the partners' data under this policy, each named by the sha256
    # of its FAB (Flower's app hash). The officers sign them with the rest, so the coordinator cannot
    # swap the code after approval: each node refuses a run of any other app. Empty: any app the
    # node's operator approved, and the policy hashes as it did before this field existed.
    flower_apps: tuple[str, ...] = ()

    @field_validator("partners")
    @classmethod
    def _unique_partners(cls, partners: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(partners)) != len(partners):
            raise ValueError("partners must be listed once each")
        return tuple(sorted(partners))

    @field_validator("flower_apps")
    @classmethod
    def _app_hashes(cls, apps: tuple[str, ...]) -> tuple[str, ...]:
        found = sorted({a.strip().lower() for a in apps})
        bad = [a for a in found if not _SHA256.match(a)]
        if bad:
            raise ValueError(
                f"a Flower App is named by the sha256 of its FAB (64 hex digits), got {bad[0]!r}"
            )
        return tuple(found)

    @model_validator(mode="after")
    def _rules(self) -> DataUsePolicy:
        _check_columns(self.columns, sensitive=False)
        _check_columns(self.sensitive_columns, sensitive=True)
        for jurisdiction in self.jurisdictions:
            if self.lawful_basis not in allowed_lawful_bases(jurisdiction):
                # PIPL Art. 13 has no "legitimate interests" basis (GDPR Art. 6(1)(f) does).
                raise ValueError(
                    f"lawful_basis {self.lawful_basis.value!r} is not available under {jurisdiction.value} "
                    "law (PIPL Art. 13 / GDPR Art. 6)"
                )
        if self.automated_decisions and not self.automated_decision_opt_out:
            # PIPL Art. 24(3) / GDPR Art. 22(3): members can refuse decisions made solely by automation.
            raise ValueError(
                "automated_decisions needs automated_decision_opt_out (PIPL Art. 24 / GDPR Art. 22)"
            )
        return self

    @property
    def jurisdictions(self) -> frozenset[Jurisdiction]:
        """Laws the policy's regions are under; unmapped regions bring both mapped laws (stricter)."""
        found = {jurisdiction_of_region(r) for r in (*self.regions, self.coordinator_region)}
        return frozenset(Jurisdiction) if None in found else frozenset(j for j in found if j)

    @property
    def data_categories(self) -> frozenset[str]:
        """The taxonomy categories of every column the policy allows."""
        return frozenset(
            category_of(table, column)
            for spec in (self.columns, self.sensitive_columns)
            for table, columns in spec.items()
            for column in columns
        )

    @property
    def has_sensitive_data(self) -> bool:
        return any(self.sensitive_columns.values())

    @property
    def shares_between_handlers(self) -> bool:
        """More than one partner, or a purpose that provides data to another handler (PIPL 23)."""
        return len(self.partners) > 1 or data_use(self.purpose.value).shares_with_other_handler

    def canonical_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the bytes the content hash is taken over."""
        document = self.model_dump(mode="json")
        if not self.flower_apps:
            del document["flower_apps"]  # a policy that names no app keeps the hash it always had
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON; approvals bind to it."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def _check_columns(spec: dict[str, tuple[str, ...]], *, sensitive: bool) -> None:
    for table, columns in spec.items():
        for column in columns:
            category = category_of(table, column)
            if is_sensitive(category) and not sensitive:
                raise ValueError(
                    f"{table}.{column} is sensitive ({category}); list it under sensitive_columns, "
                    "which are read only for fairness evaluation (PIPL Art. 28-29 / GDPR Art. 9)"
                )
            if sensitive and not is_sensitive(category):
                raise ValueError(f"{table}.{column} is not sensitive; list it under columns")


def parse_policy(data: dict[str, Any], *, source: str = "policy") -> DataUsePolicy:
    """Validate a parsed YAML/JSON mapping; errors name ``source`` and the offending field."""
    try:
        return DataUsePolicy.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise PolicyFileError(f"{source}: field {where}: {first['msg']}{more}") from err


def load_policy(path: Path) -> DataUsePolicy:
    """Read a policy from a ``.yaml``/``.yml``/``.json`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PolicyFileError(f"{path}: cannot read policy file ({err.strerror})") from err
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise PolicyFileError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}"
        ) from err
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: a policy must be a mapping of fields")
    return parse_policy(data, source=str(path))
