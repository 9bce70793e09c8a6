"""Known-answer tests: RFC 9380 K.3 (expand_message_xmd SHA-512) and RFC 9496 Appendix A."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psi.hash_to_curve import expand_message_xmd, hash_to_ristretto255, hash_to_ristretto255_batch
from psi.ristretto255 import from_uniform_bytes, is_valid_element, scalarmult, scalarmult_base

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
XMD = json.loads((VECTORS / "rfc9380_k3_expand_message_xmd_sha512.json").read_text())
R255 = json.loads((VECTORS / "rfc9496_appendix_a_ristretto255.json").read_text())


@pytest.mark.parametrize("case", XMD["tests"], ids=lambda c: f"{c['msg'][:8]}-{c['len_in_bytes']}")
def test_expand_message_xmd_matches_rfc9380_k3(case: dict) -> None:
    out = expand_message_xmd(case["msg"].encode(), XMD["DST"].encode(), case["len_in_bytes"])
    assert out.hex() == case["uniform_bytes"]


@pytest.mark.parametrize("case", R255["A.3_group_elements_from_uniform_bytes"], ids=lambda c: c["output"][:8])
def test_element_derivation_matches_rfc9496_a3(case: dict) -> None:
    assert from_uniform_bytes(bytes.fromhex(case["input"])).hex() == case["output"]


def test_multiples_of_the_generator_match_rfc9496_a1() -> None:
    multiples = R255["A.1_multiples_of_generator"]
    for k, expected in enumerate(multiples[1:], start=1):
        assert scalarmult_base(k.to_bytes(32, "little")).hex() == expected
        assert is_valid_element(bytes.fromhex(expected))
    assert not is_valid_element(bytes.fromhex(multiples[0]))  # the identity is refused


@pytest.mark.parametrize("encoding", R255["A.2_invalid_encodings"], ids=lambda h: h[:8])
def test_invalid_encodings_of_rfc9496_a2_are_rejected(encoding: str) -> None:
    assert not is_valid_element(bytes.fromhex(encoding))
    with pytest.raises(Exception, match="invalid or identity"):
        scalarmult((7).to_bytes(32, "little"), bytes.fromhex(encoding))


def test_fast_batch_hash_equals_the_rfc_construction() -> None:
    dst = b"QUUX-V01-CS02-with-ristretto255_XMD:SHA-512_R255MAP_RO_"
    messages = [b"", b"abc", b"x" * 300]
    batch = hash_to_ristretto255_batch(messages, dst)
    for msg, uniform in zip(messages, batch, strict=True):
        assert uniform == expand_message_xmd(msg, dst, 64)
        assert from_uniform_bytes(uniform) == hash_to_ristretto255(msg, dst)
