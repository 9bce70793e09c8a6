"""An interchange row's fields hash is the digest stored rows hold: sha256 of ``json.dumps`` of the
fields' strings. A retried transfer is compared by it, so its text must never change."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from participant_node.points.interchange_rows import fields_hash


def _stored_definition(*fields: object) -> str:
    return hashlib.sha256(json.dumps([str(f) for f in fields]).encode()).hexdigest()


def test_a_known_row_keeps_its_digest() -> None:
    # The digest of a row written before: sha256 of '["FM-0000501", "careplus", "250"]'.
    stored = "f6445782e856eceb8f1147857248a3995f8ae1c2546e47b2b715688c56cad292"
    assert fields_hash("FM-0000501", "careplus", 250) == stored
    assert fields_hash('成员-Ω\\"\n', 1) == _stored_definition('成员-Ω\\"\n', 1)


@settings(max_examples=300, derandomize=True)
@given(st.lists(st.one_of(st.text(), st.integers(), st.none(), st.floats(allow_nan=False)), max_size=6))
def test_any_fields_hash_as_json_dumps_of_their_strings(fields: list[object]) -> None:
    # Quotes, backslashes, control characters and non-ASCII (escaped as \uXXXX) included.
    assert fields_hash(*fields) == _stored_definition(*fields)
