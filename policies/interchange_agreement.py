"""A points-interchange agreement between two partners, as policy-as-code, signed by both data officers.

The agreement fixes, for each direction, the conversion (a block of source points buys a block of
destination points, e.g. 250 → 200), the minimum and maximum per transfer, caps per member per day
and month and per partner per day, a fee per point with a ceiling per transfer, and the settlement
price the source partner pays per destination point. Both directions share a validity window, a
netting period and an epoch (link tokens rotate with it). Like a data-use policy it is parsed once
into a frozen model, identified by the sha256 of its canonical JSON, and in force only once each
partner's data officer has signed that hash with their Ed25519 key (RFC 8032); any change is a new
hash that voids every signature.

Arbitrage guard: a round trip A → B → A at the agreed rates must not return more points than it
started with, or members could mint points by cycling them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import Annotated, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from policies.errors import PolicyError

__all__ = [
    "AGREEMENT_SCHEMA_VERSION",
    "AgreementError",
    "AgreementSignature",
    "AgreementSignatureError",
    "ConversionQuote",
    "ConversionTerms",
    "InterchangeAgreement",
    "SignedAgreement",
    "parse_agreement",
    "sign_agreement",
    "signature_verifies",
]

AGREEMENT_SCHEMA_VERSION = 1
# Domain separation: an officer's key also signs data-use approvals; a signature over an agreement
# hash must never be replayable as anything else.
_SIGNING_CONTEXT = b"loyalfed interchange agreement v1\x00"
PartnerId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class AgreementError(PolicyError):
    """An agreement is malformed, not in force, or a transfer breaks one of its rules."""

    def __init__(self, message: str, *, rule: str = "agreement") -> None:
        super().__init__(message)
        self.rule = rule


class AgreementSignatureError(AgreementError):
    """A signature is missing or does not verify (deliberately vague about which check failed)."""


@dataclass(frozen=True)
class ConversionQuote:
    """What a transfer of ``points`` source points costs and credits under one direction's terms."""

    points: int  # converted, debited from the member
    fee: int  # source points, debited on top
    credited: int  # destination points credited to the member
    settlement_amount: Decimal  # money the source partner owes the destination partner


class ConversionTerms(BaseModel):
    """One direction of an agreement: from ``source`` points to ``destination`` points."""

    model_config = _FROZEN

    source: PartnerId
    destination: PartnerId
    block_in: int = Field(gt=0, le=10_000_000)  # source points per block
    block_out: int = Field(gt=0, le=10_000_000)  # destination points per block
    min_points: int = Field(gt=0)
    max_points: int = Field(gt=0)
    member_daily_cap: int = Field(gt=0)
    member_monthly_cap: int = Field(gt=0)
    partner_daily_cap: int = Field(gt=0)
    fee_per_point: Decimal = Field(default=Decimal(0), ge=0, lt=1)
    fee_ceiling: int = Field(default=0, ge=0)
    settlement_price: Decimal = Field(ge=0)  # money per destination point

    @model_validator(mode="after")
    def _consistent(self) -> ConversionTerms:
        if self.source == self.destination:
            raise ValueError("a direction needs two different partners")
        if self.min_points > self.max_points:
            raise ValueError("min_points must not exceed max_points")
        if self.min_points % self.block_in or self.max_points % self.block_in:
            raise ValueError("min_points and max_points must be whole blocks of block_in")
        if self.max_points > self.member_daily_cap or self.member_daily_cap > self.member_monthly_cap:
            raise ValueError("caps must satisfy max_points <= member_daily_cap <= member_monthly_cap")
        if self.member_daily_cap > self.partner_daily_cap:
            raise ValueError("member_daily_cap must not exceed partner_daily_cap")
        return self

    @property
    def rate(self) -> Fraction:
        return Fraction(self.block_out, self.block_in)

    def quote(self, points: int) -> ConversionQuote:
        """Check ``points`` against the per-transfer rules and price the transfer."""
        if points < self.min_points or points > self.max_points:
            raise AgreementError(
                f"{points} points is outside {self.min_points}..{self.max_points} per transfer "
                f"from {self.source} to {self.destination}",
                rule="amount_range",
            )
        if points % self.block_in:
            raise AgreementError(
                f"{points} points is not a whole number of blocks of {self.block_in}", rule="block"
            )
        credited = points // self.block_in * self.block_out
        fee = int((self.fee_per_point * points).to_integral_value(rounding=ROUND_CEILING))
        fee = min(fee, self.fee_ceiling) if self.fee_ceiling else fee
        return ConversionQuote(points, fee, credited, self.settlement_price * credited)


class InterchangeAgreement(BaseModel):
    """Both partners' programmes and the terms of each direction between them."""

    model_config = _FROZEN

    schema_version: int = AGREEMENT_SCHEMA_VERSION
    agreement_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    partners: tuple[PartnerId, PartnerId]
    programmes: dict[PartnerId, str]
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    terms: tuple[ConversionTerms, ...] = Field(min_length=1, max_length=2)
    valid_from: datetime
    valid_until: datetime
    netting_period_days: int = Field(default=30, ge=1, le=366)
    transfer_timeout_s: float = Field(default=30.0, gt=0, le=86_400)
    epoch: int = Field(default=1, ge=1)
    # Moved points keep the expiry they had at the source (unset), or expire this many months after
    # the transfer posts at the destination (the agreement's own rule).
    moved_points_expiry_months: int | None = Field(default=None, ge=1, le=600)

    @model_validator(mode="after")
    def _rules(self) -> InterchangeAgreement:
        a, b = self.partners
        if a == b:
            raise ValueError("an agreement is between two different partners")
        if set(self.programmes) != {a, b}:
            raise ValueError("programmes must name exactly the two partners' programmes")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        directions = [(t.source, t.destination) for t in self.terms]
        if len(set(directions)) != len(directions) or not set(directions) <= {(a, b), (b, a)}:
            raise ValueError("terms must be one per direction between the two partners")
        if len(self.terms) == 2:
            round_trip = self.terms[0].rate * self.terms[1].rate
            if round_trip > 1:
                raise ValueError(
                    f"a round trip at these rates returns {float(round_trip):.4f}× the points "
                    "(arbitrage guard: the product of both rates must be at most 1)"
                )
        return self

    def peer_of(self, partner: str) -> str:
        if partner not in self.partners:
            raise AgreementError(f"partner {partner} is not a party to agreement {self.agreement_id}")
        return self.partners[1] if partner == self.partners[0] else self.partners[0]

    def terms_for(self, source: str, destination: str) -> ConversionTerms:
        for terms in self.terms:
            if (terms.source, terms.destination) == (source, destination):
                return terms
        raise AgreementError(
            f"agreement {self.agreement_id} allows no transfers from {source} to {destination}",
            rule="direction",
        )

    def in_force(self, at: datetime) -> bool:
        return self.valid_from <= at < self.valid_until

    def check_in_force(self, at: datetime) -> None:
        if not self.in_force(at):
            raise AgreementError(
                f"agreement {self.agreement_id} is valid from {self.valid_from.isoformat()} "
                f"until {self.valid_until.isoformat()}, not at {at.isoformat()}",
                rule="validity",
            )

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json")
        if data["moved_points_expiry_months"] is None:
            # Unset is the rule agreements had before the field existed: their hashes (and the
            # officers' signatures over them) stay valid.
            del data["moved_points_expiry_months"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """sha256 of the canonical JSON: what both officers sign."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def parse_agreement(data: Mapping[str, Any], *, source: str = "agreement") -> InterchangeAgreement:
    """Validate a parsed YAML/JSON mapping; errors name ``source`` and the offending field."""
    try:
        return InterchangeAgreement.model_validate(dict(data))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise AgreementError(f"{source}: field {where}: {first['msg']}") from err


class AgreementSignature(BaseModel):
    """One data officer's Ed25519 signature over an agreement's content hash, for their partner."""

    model_config = _FROZEN

    partner: PartnerId
    officer: str = Field(min_length=1, max_length=128)
    agreement_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")
    signed_at: datetime


def _message(agreement_hash: str, partner: str) -> bytes:
    return _SIGNING_CONTEXT + agreement_hash.encode("ascii") + b"\x00" + partner.encode("ascii")


def sign_agreement(
    agreement: InterchangeAgreement, *, partner: str, officer: str, key: Ed25519PrivateKey, at: datetime
) -> AgreementSignature:
    """``officer``'s approval of ``agreement`` for ``partner`` (a party to it)."""
    agreement.peer_of(partner)
    digest = agreement.content_hash()
    public = key.public_key().public_bytes_raw().hex()
    return AgreementSignature(
        partner=partner,
        officer=officer,
        agreement_hash=digest,
        public_key=public,
        signature=key.sign(_message(digest, partner)).hex(),
        signed_at=at,
    )


class SignedAgreement(BaseModel):
    """An agreement with its officers' signatures; in force only when both partners signed it."""

    model_config = _FROZEN

    agreement: InterchangeAgreement
    signatures: tuple[AgreementSignature, ...] = ()

    def with_signature(self, signature: AgreementSignature) -> SignedAgreement:
        kept = tuple(s for s in self.signatures if s.partner != signature.partner)
        return SignedAgreement(agreement=self.agreement, signatures=(*kept, signature))

    def signed_by(self) -> set[str]:
        digest = self.agreement.content_hash()
        return {s.partner for s in self.signatures if s.agreement_hash == digest}

    def verify(self, officer_keys: Mapping[str, Ed25519PublicKey]) -> None:
        """Raise unless each partner's trusted officer key signed the current hash.

        ``officer_keys`` pins each partner's officer key (from the federation's configuration,
        never from the signature itself).
        """
        digest = self.agreement.content_hash()
        for partner in self.agreement.partners:
            trusted = officer_keys.get(partner)
            if trusted is None or not any(
                _verifies(trusted, s, digest) for s in self.signatures if s.partner == partner
            ):
                raise AgreementSignatureError(
                    f"agreement {self.agreement.agreement_id} lacks a valid signature "
                    f"of {partner}'s data officer"
                )


def signature_verifies(key: Ed25519PublicKey, signature: AgreementSignature, digest: str) -> bool:
    """``signature`` is ``key``'s, over agreement hash ``digest`` for the partner it names."""
    return _verifies(key, signature, digest)


def _verifies(key: Ed25519PublicKey, signature: AgreementSignature, digest: str) -> bool:
    if signature.agreement_hash != digest or key.public_bytes_raw().hex() != signature.public_key:
        return False
    try:
        key.verify(bytes.fromhex(signature.signature), _message(digest, signature.partner))
    except InvalidSignature:
        return False
    return True
