"""The X25519 backend: RFC 9380 curve25519 vectors, RFC 7748 commutation and element validation."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import gmpy2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

# Submodule imports: tests/ is on sys.path and its psi/ folder would shadow the package name.
from psi.errors import InvalidElementError
from psi.group_engine import GroupEngine
from psi.hash_to_curve25519 import (
    FIELD_P,
    encode_to_curve,
    encode_to_u,
    hash_to_curve,
    hash_to_field,
    map_to_curve_elligator2,
)
from psi.wire import PsiGroup, SessionParams
from psi.x25519 import SMALL_ORDER_U, element_problem, x25519

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "rfc9380_curve25519_xmd_sha512_ell2_ro.json").read_text()
)


def _point(vector: dict[str, str], name: str) -> tuple[int, int]:
    return int(vector[f"{name}_x"], 16), int(vector[f"{name}_y"], 16)


@pytest.mark.parametrize("vector", VECTORS["ro"]["vectors"], ids=lambda v: v["msg"][:8] or "empty")
def test_rfc9380_j41_curve25519_ro_vectors(vector: dict[str, str]) -> None:
    dst, msg = VECTORS["ro"]["dst"].encode(), vector["msg"].encode()
    u0, u1 = hash_to_field(msg, dst, 2)
    assert (u0, u1) == (int(vector["u0"], 16), int(vector["u1"], 16))
    assert map_to_curve_elligator2(u0) == _point(vector, "Q0")
    assert map_to_curve_elligator2(u1) == _point(vector, "Q1")
    assert hash_to_curve(msg, dst) == _point(vector, "P")


@pytest.mark.parametrize("vector", VECTORS["nu"]["vectors"], ids=lambda v: v["msg"][:8] or "empty")
def test_rfc9380_j42_curve25519_nu_vectors_and_the_u_only_fast_path(vector: dict[str, str]) -> None:
    dst, msg = VECTORS["nu"]["dst"].encode(), vector["msg"].encode()
    assert hash_to_field(msg, dst, 1) == [int(vector["u0"], 16)]
    assert map_to_curve_elligator2(int(vector["u0"], 16)) == _point(vector, "Q")
    assert encode_to_curve(msg, dst) == _point(vector, "P")
    # The PSI hot path: Q's u-coordinate, RFC 7748 little-endian (X25519 clears the cofactor).
    assert encode_to_u(msg, dst) == _point(vector, "Q")[0].to_bytes(32, "little")


def test_clamped_scalars_commute_and_agree_with_cryptography() -> None:
    rng = random.Random(11)
    for _ in range(20):
        a, b = rng.randbytes(32), rng.randbytes(32)
        point = encode_to_u(rng.randbytes(16))
        assert x25519(a, x25519(b, point)) == x25519(b, x25519(a, point))
        # libsodium (our hot path) and OpenSSL through `cryptography` compute the same RFC 7748 function.
        theirs = X25519PrivateKey.from_private_bytes(a).exchange(X25519PublicKey.from_public_bytes(point))
        assert x25519(a, point) == theirs


@pytest.mark.parametrize("u", sorted(SMALL_ORDER_U))
def test_small_order_blocklist_is_small_order_and_rejected(u: int) -> None:
    encoding = u.to_bytes(32, "little")
    # A clamped scalar is a multiple of 8, so X25519 of any point of order <= 8 is all-zero:
    # OpenSSL refuses it, which independently confirms each blocklist entry.
    with pytest.raises(ValueError):
        X25519PrivateKey.from_private_bytes(os.urandom(32)).exchange(
            X25519PublicKey.from_public_bytes(encoding)
        )
    assert element_problem(encoding) == "small-order element"


def test_element_validation_names_each_broken_rule() -> None:
    good = encode_to_u(b"member")
    assert element_problem(good) is None
    assert element_problem(good[:31] + bytes([good[31] | 0x80])) == "non-canonical (top bit set)"
    assert element_problem((FIELD_P + 3).to_bytes(32, "little")) == "non-canonical (u >= p)"
    twist_u = next(u for u in range(2, 100) if gmpy2.jacobi(u**3 + 486662 * u**2 + u, FIELD_P) == -1)
    assert element_problem(twist_u.to_bytes(32, "little")) == "twist point (not on curve25519)"
    assert element_problem(good[:16]) == "wrong length"


def test_engine_rejects_a_twist_point_by_chunk_and_index() -> None:
    twist_u = next(u for u in range(2, 100) if gmpy2.jacobi(u**3 + 486662 * u**2 + u, FIELD_P) == -1)
    blob = encode_to_u(b"a") + encode_to_u(b"b") + twist_u.to_bytes(32, "little")
    with (
        GroupEngine(1) as engine,
        pytest.raises(InvalidElementError, match=r"'RESPONDER_ELEMENTS', chunk 3, element 2: twist point"),
    ):
        engine.blind(blob, os.urandom(32), message="RESPONDER_ELEMENTS", chunk=3, group=PsiGroup.X25519)


def test_session_parameters_carry_the_group() -> None:
    params = SessionParams(
        session_id="cd" * 16, mode="cardinality", initiator_size=3, responder_size=4, group=PsiGroup.X25519
    )
    assert SessionParams.from_json(params.to_json()).group is PsiGroup.X25519
    other = params.to_json().replace(PsiGroup.X25519.value, PsiGroup.RISTRETTO255.value)
    assert SessionParams.from_json(other).group is PsiGroup.RISTRETTO255
    with pytest.raises(Exception, match="malformed session parameters"):
        SessionParams.from_json(params.to_json().replace(PsiGroup.X25519.value, "P256_XMD:SHA-256_SSWU_RO_"))
