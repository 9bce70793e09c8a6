"""RFC 6962/9162 Merkle tree: published known-answer vectors and self-consistency properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle_tree import (
    EMPTY_ROOT,
    LeafList,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rfc6962_transparency_dev_merkle.json").read_text()
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]
ROOTS = [bytes.fromhex(h) for h in VECTORS["root_hashes_by_size_hex"]]


def _unhex(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in items]


def test_empty_root_matches_vector() -> None:
    assert bytes.fromhex(VECTORS["empty_root_hex"]) == EMPTY_ROOT


def test_leaf_and_node_hashes_match_vectors() -> None:
    source = LeafList(LEAF_HASHES)
    for level, hashes in enumerate(VECTORS["node_hashes_hex"]):
        for index, expected in enumerate(hashes):
            assert source.subtree(level, index).hex() == expected, (level, index)


@pytest.mark.parametrize("size", range(9))
def test_root_of_every_prefix_matches_vector(size: int) -> None:
    assert range_hash(LeafList(LEAF_HASHES[:size]), 0, size) == ROOTS[size]


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"], ids=str)
def test_inclusion_proof_vectors(vector: dict) -> None:
    index, size, expected = vector["leaf_index"], vector["tree_size"], _unhex(vector["proof_hex"])
    assert inclusion_proof(LeafList(LEAF_HASHES[:size]), index, size) == expected
    assert verify_inclusion(LEAF_HASHES[index], index, size, expected, ROOTS[size])
    # Corruptions adapted from transparency-dev/merkle corruptInclusionProof.
    assert not verify_inclusion(LEAF_HASHES[index], index, size, [*expected, ROOTS[size]], ROOTS[size])
    assert not verify_inclusion(LEAF_HASHES[index], index, size * 2, expected, ROOTS[size])
    assert not verify_inclusion(b"WrongLeaf", index, size, expected, ROOTS[size])
    assert not verify_inclusion(LEAF_HASHES[index], index, size, expected, EMPTY_ROOT)
    for i in range(len(expected)):
        flipped = [*expected]
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        assert not verify_inclusion(LEAF_HASHES[index], index, size, flipped, ROOTS[size])
    if expected:
        assert not verify_inclusion(LEAF_HASHES[index], index, size, expected[:-1], ROOTS[size])


@pytest.mark.parametrize("vector", VECTORS["consistency_proofs"], ids=str)
def test_consistency_proof_vectors(vector: dict) -> None:
    m, n, expected = vector["size1"], vector["size2"], _unhex(vector["proof_hex"])
    assert consistency_proof(LeafList(LEAF_HASHES[:n]), m, n) == expected
    assert verify_consistency(m, n, expected, ROOTS[m], ROOTS[n])
    if expected:
        assert not verify_consistency(m, n, expected, ROOTS[n], ROOTS[m])
        assert not verify_consistency(m, n, [], ROOTS[m], ROOTS[n])
        assert not verify_consistency(m, n, expected[:-1], ROOTS[m], ROOTS[n])
        assert not verify_consistency(m, n, [*expected, ROOTS[n]], ROOTS[m], ROOTS[n])
        for i in range(len(expected)):
            flipped = [*expected]
            flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
            assert not verify_consistency(m, n, flipped, ROOTS[m], ROOTS[n])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.data())
def test_every_proof_verifies_against_the_reference_root(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    source = LeafList(leaves)
    root = range_hash(source, 0, size)
    index = data.draw(st.integers(0, size - 1))
    assert verify_inclusion(leaves[index], index, size, inclusion_proof(source, index, size), root)
    old = data.draw(st.integers(1, size))
    old_root = range_hash(LeafList(leaves[:old]), 0, old)
    assert verify_consistency(old, size, consistency_proof(source, old, size), old_root, root)
    if old < size:
        assert not verify_consistency(old, size, consistency_proof(source, old, size), root, root)
