"""The ECDH-PSI protocol: correctness properties, validation of received elements, wire hygiene."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Submodule imports: tests/ is on sys.path and its psi/ folder would shadow the package name.
from psi.errors import InvalidElementError, PsiProtocolError
from psi.group_engine import GroupEngine
from psi.identifiers import IdentifierKind, prepare_identifiers
from psi.local_run import run_local
from psi.protocol import Initiator, Responder
from psi.ristretto255 import IDENTITY
from psi.wire import Frame, MessageKind, PsiGroup, PsiMode, Reveal, SessionParams

SECRET = b"federation-secret-for-tests-0001"
identifiers = st.lists(st.text(min_size=0, max_size=12), max_size=25)
# Every protocol property holds for both group backends.
each_group = pytest.mark.parametrize("group", list(PsiGroup), ids=["ristretto255", "x25519"])
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seeded(seed: int):
    generator = random.Random(seed)
    return lambda n: generator.randbytes(n)


def _emails(values: list[str]) -> list[bytes]:
    return prepare_identifiers([f"{v}@x.example" for v in values], IdentifierKind.EMAIL, secret=SECRET).items


@each_group
@FAST
@given(a=identifiers, b=identifiers)
def test_intersection_equals_the_plain_set_intersection(group: PsiGroup, a: list[str], b: list[str]) -> None:
    # Unicode, duplicates and empty sets included; prepare_identifiers deduplicates.
    items_a, items_b = _emails(a), _emails(b)
    run = run_local(items_a, items_b, workers=2, chunk_size=7, group=group)
    learned = {items_a[i] for i in run.initiator.matched_indices}
    assert learned == set(items_a) & set(items_b)
    assert run.responder.matched_indices is None and run.responder.cardinality is None


@each_group
@FAST
@given(a=identifiers, b=identifiers)
def test_cardinality_and_reveal_both_agree_with_sets(group: PsiGroup, a: list[str], b: list[str]) -> None:
    items_a, items_b = _emails(a), _emails(b)
    expected = set(items_a) & set(items_b)
    card = run_local(items_a, items_b, mode=PsiMode.CARDINALITY, workers=1, chunk_size=5, group=group)
    assert card.initiator.cardinality == len(expected) and card.initiator.matched_indices is None
    both = run_local(items_a, items_b, reveal=Reveal.BOTH, workers=1, chunk_size=4, group=group)
    assert {items_b[i] for i in both.responder.matched_indices} == expected


def test_malformed_identifiers_are_counted_not_matched() -> None:
    prepared = prepare_identifiers(
        ["+1 415 555 0100", "(415) 555-0100", "not a phone", "", None, "☎"],
        IdentifierKind.PHONE,
        secret=SECRET,
    )
    assert (len(prepared.items), prepared.duplicates, prepared.malformed, prepared.empty) == (1, 1, 2, 2)


@each_group
def test_intersection_sum_gives_the_sum_to_the_responder_only(group: PsiGroup) -> None:
    a = [f"m{i}@x.example" for i in range(40)]
    b = [f"m{i}@x.example" for i in range(25, 60)]
    items_a = prepare_identifiers(a, IdentifierKind.EMAIL, secret=SECRET).items
    items_b = prepare_identifiers(b, IdentifierKind.EMAIL, secret=SECRET).items
    values = [3 * i + 1 for i in range(len(b))]
    run = run_local(
        items_a, items_b, mode=PsiMode.SUM, responder_values=values, paillier_bits=1024, group=group
    )
    shared = [i for i, v in enumerate(b) if v in set(a)]
    assert run.responder.intersection_sum == sum(values[i] for i in shared)
    assert run.initiator.cardinality == len(shared) and run.initiator.intersection_sum is None


@each_group
def test_wire_never_carries_identifiers_or_unblinded_hashes(group: PsiGroup) -> None:
    from psi.hash_to_curve import hash_to_ristretto255
    from psi.hash_to_curve25519 import encode_to_u

    raw = [f"member{i}@shop.example" for i in range(300)]
    items = prepare_identifiers(raw, IdentifierKind.EMAIL, secret=SECRET).items
    captured: list[bytes] = []
    run_local(items, items[:150], tap=lambda _d, data: captured.append(data), chunk_size=64, group=group)
    wire = b"".join(captured)
    unblinded = [hash_to_ristretto255(i) for i in items] + [encode_to_u(i) for i in items]
    secrets_that_must_not_leak = [r.encode() for r in raw] + items + unblinded
    assert wire and not any(s in wire for s in secrets_that_must_not_leak)


def _session(
    mode: PsiMode = PsiMode.INTERSECTION, a: int = 10, b: int = 10, group: PsiGroup = PsiGroup.RISTRETTO255
) -> SessionParams:
    return SessionParams(
        session_id="ab" * 16, mode=mode, initiator_size=a, responder_size=b, chunk_size=4, group=group
    )


@each_group
@pytest.mark.parametrize("bad", [IDENTITY, b"\xff" * 32, bytes.fromhex("01" + "00" * 31)])
def test_invalid_received_elements_are_rejected_with_their_position(group: PsiGroup, bad: bytes) -> None:
    items = [bytes([i]) * 8 for i in range(10)]
    params = _session(group=group)
    with GroupEngine(1) as engine:
        initiator = Initiator(items, params, engine=engine, rng=_seeded(1))
        responder = Responder(items, params, engine=engine, rng=_seeded(2))
        frame = next(iter(initiator.element_frames()))
        tampered = frame.payload[:64] + bad + frame.payload[96:]
        forged = Frame(frame.kind, frame.session, frame.chunk, frame.chunks, frame.width, tampered)
        with pytest.raises(InvalidElementError, match=r"INITIATOR_ELEMENTS', chunk 0, element 2"):
            responder.receive(forged)


def test_chunks_are_resumable_and_size_checked() -> None:
    items = [bytes([i]) * 8 for i in range(10)]
    params = _session()
    with GroupEngine(1) as engine:
        initiator = Initiator(items, params, engine=engine, rng=_seeded(3))
        responder = Responder(items, params, engine=engine, rng=_seeded(4))
        frames = list(initiator.element_frames())
        first = responder.receive(frames[0])
        assert responder.receive(frames[0]) == first  # a re-send after a timeout: same answer
        oversized = Frame(frames[1].kind, frames[1].session, 1, 3, 32, frames[1].payload + frames[0].payload)
        with pytest.raises(PsiProtocolError, match="agreed set size"):
            responder.receive(oversized)
        with pytest.raises(PsiProtocolError, match="different content"):
            responder.receive(Frame(frames[0].kind, frames[0].session, 0, 3, 32, frames[1].payload))


def test_frames_reject_garbage_and_other_versions() -> None:
    with pytest.raises(PsiProtocolError):
        Frame.decode(b"LFPSI\x02" + bytes(40))
    with pytest.raises(PsiProtocolError):
        Frame.decode(b"short")
    with pytest.raises(PsiProtocolError, match="wire version"):
        SessionParams(
            session_id="00" * 16, mode=PsiMode.CARDINALITY, initiator_size=1, responder_size=1, version=9
        )
    good = Frame(MessageKind.REVEAL, bytes(16), 0, 1, 4, b"\x00\x00\x00\x01")
    assert Frame.decode(good.encode()) == good


@each_group
def test_fresh_keys_per_session_change_every_blinded_element(group: PsiGroup) -> None:
    items = [bytes([i]) * 8 for i in range(10)]
    with GroupEngine(1) as engine:
        one = next(iter(Initiator(items, _session(group=group), engine=engine).element_frames())).payload
        two = next(iter(Initiator(items, _session(group=group), engine=engine).element_frames())).payload
    assert {one[i : i + 32] for i in range(0, len(one), 32)}.isdisjoint(
        {two[i : i + 32] for i in range(0, len(two), 32)}
    )


@each_group
@settings(max_examples=200, deadline=None)
@given(candidate=st.binary(min_size=32, max_size=32))
def test_any_32_bytes_are_either_a_valid_element_or_rejected_by_index(
    group: PsiGroup, candidate: bytes
) -> None:
    from psi.ristretto255 import is_valid_element
    from psi.x25519 import element_problem

    items = [bytes([i]) * 8 for i in range(10)]
    params = _session(group=group)
    valid = (
        is_valid_element(candidate) if group == PsiGroup.RISTRETTO255 else element_problem(candidate) is None
    )
    with GroupEngine(1) as engine:
        responder = Responder(items, params, engine=engine, rng=_seeded(5))
        frame = Frame(MessageKind.INITIATOR_ELEMENTS, params.session_bytes, 2, 3, 32, candidate * 2)
        if valid:
            assert len(responder.receive(frame)[0].payload) == 2 * params.tag_bytes
        else:
            with pytest.raises(InvalidElementError, match="chunk 2, element 0"):
                responder.receive(frame)
