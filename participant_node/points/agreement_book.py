"""The agreements a node holds, each verified against the officers' pinned keys before use."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from participant_node.points.errors import PointsError
from policies.interchange_agreement import AgreementError, InterchangeAgreement, SignedAgreement

__all__ = ["AgreementBook", "load_signed_agreement", "officer_key"]

AGREEMENT_SUFFIX = ".agreement.json"


def officer_key(hex_key: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
    except ValueError as err:
        raise PointsError("an officer public key must be 32 bytes of hex (Ed25519, RFC 8032)") from err


def load_signed_agreement(path: Path) -> SignedAgreement:
    try:
        return SignedAgreement.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as err:
        raise PointsError(f"{path}: cannot read agreement ({err.strerror})") from err
    except (json.JSONDecodeError, ValidationError) as err:
        raise PointsError(f"{path}: not a signed agreement ({type(err).__name__})") from err


class AgreementBook:
    """This node's signed agreements, by id and by partner; only fully signed ones are used."""

    def __init__(self, partner: str, agreements: Iterable[SignedAgreement], officer_keys: Mapping[str, str]):
        self.partner = partner
        keys = {p: officer_key(k) for p, k in officer_keys.items()}
        self._by_id: dict[str, SignedAgreement] = {}
        # Each agreement's content hash, computed once: agreements are frozen models, and every
        # reserve message names (source) or is checked against (destination) its agreement's hash.
        self._hashes: dict[str, str] = {}
        for signed in agreements:
            signed.verify(keys)
            signed.agreement.peer_of(partner)  # a party to it
            self._by_id[signed.agreement.agreement_id] = signed
            self._hashes[signed.agreement.agreement_id] = signed.agreement.content_hash()

    @classmethod
    def from_folder(cls, partner: str, folder: Path, officer_keys: Mapping[str, str]) -> AgreementBook:
        files = sorted(folder.glob(f"*{AGREEMENT_SUFFIX}")) if folder.exists() else []
        return cls(partner, [load_signed_agreement(f) for f in files], officer_keys)

    def by_id(self, agreement_id: str) -> InterchangeAgreement:
        signed = self._by_id.get(agreement_id)
        if signed is None:
            raise AgreementError(
                f"no signed agreement {agreement_id} at {self.partner}", rule="unknown_agreement"
            )
        return signed.agreement

    def content_hash(self, agreement_id: str) -> str:
        """``by_id(agreement_id).content_hash()``, computed when the book was loaded."""
        self.by_id(agreement_id)  # the same refusal for an unknown id
        return self._hashes[agreement_id]

    def for_peer(self, peer: str, at: datetime) -> InterchangeAgreement:
        """The agreement with ``peer`` in force at ``at`` (the newest epoch if several)."""
        found = [
            s.agreement
            for s in self._by_id.values()
            if peer in s.agreement.partners and s.agreement.in_force(at)
        ]
        if not found:
            raise AgreementError(f"no signed agreement with {peer} in force", rule="no_agreement")
        return max(found, key=lambda a: (a.epoch, a.valid_from))

    def latest_with(self, peer: str) -> InterchangeAgreement:
        """The newest agreement with ``peer``, in force or not (settling a past period)."""
        found = [s.agreement for s in self._by_id.values() if peer in s.agreement.partners]
        if not found:
            raise AgreementError(f"no signed agreement with {peer}", rule="no_agreement")
        return max(found, key=lambda a: (a.epoch, a.valid_from))

    def all(self) -> list[InterchangeAgreement]:
        return [s.agreement for s in self._by_id.values()]
