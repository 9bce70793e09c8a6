"""Signed policy decisions: RFC 8032 vectors, the v1 statement format, forgery and replay refusals."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.approval import ApprovalDecision
from policies.signed_approval import (
    DecisionHistory,
    DecisionStatement,
    ReplayedDecisionError,
    SignatureRejectedError,
    SignedDecision,
    SigningKeyError,
    generate_signing_key,
    load_private_key,
    load_public_key,
    public_key_b64,
    public_key_from_b64,
    sign_decision,
    write_key_pair,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "rfc8032_section7_1_ed25519.json"
HASH = "ab" * 32
OTHER_HASH = "cd" * 32
NOW = datetime(2026, 12, 6, 6, 0, 0, tzinfo=UTC)


def _key(seed: int = 1) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def _sign(
    key: Ed25519PrivateKey,
    *,
    decision: ApprovalDecision = ApprovalDecision.APPROVED,
    now: datetime = NOW,
    nonce: int = 7,
    partner: str = "careplus",
) -> SignedDecision:
    return sign_decision(
        key,
        policy_id="churn-2026",
        policy_version=2,
        policy_hash=HASH,
        partner_id=partner,
        decision=decision,
        now=now,
        random_bytes=lambda n: bytes([nonce]) * n,
    )


@pytest.mark.parametrize("vector", json.loads(VECTORS.read_text())["vectors"], ids=lambda v: v["name"])
def test_rfc8032_vectors_sign_and_verify(vector: dict[str, str]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["secret_key"]))
    message = bytes.fromhex(vector["message"])
    assert base64.b64decode(public_key_b64(key)).hex() == vector["public_key"]
    assert key.sign(message).hex() == vector["signature"]


def test_statement_is_canonical_json_of_the_v1_fields() -> None:
    signed = _sign(_key())
    assert signed.statement == (
        '{"decision":"approved","kind":"loyalfed.policy_decision","nonce":"07070707070707070707070707070707",'
        f'"partner_id":"careplus","policy_hash":"{HASH}","policy_id":"churn-2026","policy_version":2,'
        '"signed_at":"2026-12-06T06:00:00Z","v":1}'
    )
    statement = signed.verify([_key().public_key()])
    assert statement.decision is ApprovalDecision.APPROVED
    assert statement.signed_at == NOW and statement.policy_version == 2


def test_verify_tries_every_registered_key() -> None:
    signed = _sign(_key(2))
    assert signed.verify([_key(1).public_key(), _key(2).public_key()]).partner_id == "careplus"


def _tampered(signed: SignedDecision, **changes: object) -> SignedDecision:
    fields = json.loads(signed.statement) | changes
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return SignedDecision(statement=body, signature=signed.signature)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: _sign(_key(9)), id="another key"),
        pytest.param(lambda s: _tampered(s, decision="rejected"), id="flipped decision"),
        pytest.param(lambda s: _tampered(s, partner_id="fuelco"), id="other partner"),
        pytest.param(lambda s: _tampered(s, policy_hash=OTHER_HASH), id="other hash"),
        pytest.param(lambda s: SignedDecision(s.statement + " ", s.signature), id="trailing space"),
        pytest.param(lambda s: SignedDecision(json.dumps(json.loads(s.statement)), s.signature), id="spaces"),
        pytest.param(lambda s: SignedDecision(s.statement, s.signature[:-4] + "AAA="), id="bad signature"),
        pytest.param(lambda s: SignedDecision(s.statement, "not base64!"), id="signature not base64"),
        pytest.param(lambda s: SignedDecision("{}", s.signature), id="empty statement"),
        pytest.param(lambda s: SignedDecision("not json", s.signature), id="not json"),
        pytest.param(lambda s: _tampered(s, v=2), id="version 2"),
        pytest.param(lambda s: _tampered(s, extra="x"), id="extra key"),
    ],
)
def test_forged_decisions_fail_with_the_same_vague_message(forge: object) -> None:
    signed = _sign(_key())
    forged = forge(signed)  # type: ignore[operator]
    with pytest.raises(SignatureRejectedError) as caught:
        forged.verify([_key().public_key()])
    assert str(caught.value) == "signed decision is not valid"


def test_verify_for_refuses_a_statement_about_another_hash_or_partner() -> None:
    signed = _sign(_key())
    keys = [_key().public_key()]
    assert signed.verify_for(keys, policy_hash=HASH, partner_id="careplus").nonce == "07" * 16
    with pytest.raises(SignatureRejectedError):
        signed.verify_for(keys, policy_hash=OTHER_HASH, partner_id="careplus")
    with pytest.raises(SignatureRejectedError):
        signed.verify_for(keys, policy_hash=HASH, partner_id="fuelco")


def test_from_dict_refuses_malformed_wire_objects_vaguely() -> None:
    assert SignedDecision.from_dict(_sign(_key()).to_dict()) == _sign(_key())
    for bad in (None, [], {"statement": 1, "signature": "x"}, {"statement": "x"}):
        with pytest.raises(SignatureRejectedError):
            SignedDecision.from_dict(bad)


def test_history_refuses_a_replayed_nonce_and_an_older_decision() -> None:
    keys = [_key().public_key()]
    history = DecisionHistory()
    approve = _sign(_key(), now=NOW, nonce=1).verify(keys)
    later = NOW + timedelta(hours=1)
    reject = _sign(_key(), decision=ApprovalDecision.REJECTED, now=later, nonce=2).verify(keys)
    history.accept(approve)
    history.accept(approve)  # the same newest statement again is idempotent
    history.accept(reject)
    assert history.newest(policy_hash=HASH, partner_id="careplus") == reject
    with pytest.raises(ReplayedDecisionError, match="already used"):
        history.accept(approve)
    older = _sign(_key(), now=NOW - timedelta(days=1), nonce=3).verify(keys)
    with pytest.raises(ReplayedDecisionError, match="newer decision"):
        history.accept(older)
    other_partner = _sign(_key(), partner="fuelco", nonce=4).verify(keys)
    assert history.accept(other_partner).partner_id == "fuelco"


def test_statement_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="policy_hash"):
        DecisionStatement("p", 1, "XYZ", "careplus", ApprovalDecision.APPROVED, NOW, "00" * 16)
    with pytest.raises(ValueError, match="UTC"):
        naive = NOW.replace(tzinfo=None)
        DecisionStatement("p", 1, HASH, "careplus", ApprovalDecision.APPROVED, naive, "00" * 16)
    with pytest.raises(ValueError, match="policy_version"):
        DecisionStatement("p", 0, HASH, "careplus", ApprovalDecision.APPROVED, NOW, "00" * 16)


def test_key_pair_files_private_0600_and_no_overwrite(tmp_path: Path) -> None:
    key = generate_signing_key()
    private_path, public_path = write_key_pair(key, tmp_path / "officer")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert public_key_b64(load_private_key(private_path)) == public_key_b64(key)
    assert public_key_b64(load_public_key(public_path)) == public_key_b64(key)
    assert public_key_b64(public_key_from_b64(public_path.read_text())) == public_key_b64(key)
    with pytest.raises(SigningKeyError, match="already exists"):
        write_key_pair(generate_signing_key(), tmp_path / "officer")
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(SigningKeyError, match=r"junk\.pub"):
        load_public_key(tmp_path / "junk.pub")
