"""The C fast path ``psi._x25519_batch`` against the Python reference of ``psi.x25519``.

Both paths must give byte-identical blobs and tags and reject the same element, at the same index,
with the same message. RFC 9380 J.4.2 (curve25519_XMD:SHA-512_ELL2_NU_) vectors check the C map
independently of the Python one.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Submodule imports: tests/ is on sys.path and its psi/ folder would shadow the package name.
from psi.benchmark import run_benchmark
from psi.errors import InvalidElementError, PsiProtocolError
from psi.group_engine import TAG_PERSON, GroupEngine, tag_of
from psi.hash_to_curve25519 import FIELD_P, X25519_DST, encode_to_u
from psi.wire import PsiGroup
from psi.x25519 import (
    BACKEND,
    SMALL_ORDER_U,
    X25519Backend,
    blind_range,
    blind_range_to_tags,
    hash_and_blind_range,
    x25519,
)

C, PY = X25519Backend.C, X25519Backend.PYTHON
BOTH = (C, PY)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "rfc9380_curve25519_xmd_sha512_ell2_ro.json").read_text()
)
KEY = random.Random(3).randbytes(32)
TWIST_U = 2  # 2^3 + A·2^2 + 2 is a non-square mod p (test_psi_x25519 finds the same smallest twist u)


def _valid_blob(count: int, seed: int = 5) -> bytes:
    rng = random.Random(seed)
    return hash_and_blind_range([rng.randbytes(12) for _ in range(count)], rng.randbytes(32), backend=PY)


def _both(call: Callable[[X25519Backend], bytes]) -> list[bytes]:
    return [call(backend) for backend in BOTH]


def _rejections(call: Callable[[X25519Backend], bytes]) -> list[tuple[str, int, int]]:
    seen = []
    for backend in BOTH:
        with pytest.raises(InvalidElementError) as caught:
            call(backend)
        seen.append((str(caught.value), caught.value.index, caught.value.chunk))
    return seen


def test_the_c_extension_is_built_in_this_environment() -> None:
    # setup.py builds it on `pip install -e .`; a silent fallback to Python must not pass unnoticed.
    from psi import _x25519_batch

    assert BACKEND is C
    assert hasattr(_x25519_batch, "ElementRejected")


@FAST
@given(st.lists(st.binary(max_size=300), max_size=40))
def test_hash_and_blind_is_byte_identical_on_random_items(items: list[bytes]) -> None:
    c, py = _both(lambda b: hash_and_blind_range(items, KEY, backend=b))
    assert c == py and len(c) == 32 * len(items)


def test_hash_and_blind_is_byte_identical_on_empty_unicode_and_long_items() -> None:
    rng = random.Random(9)
    items = [b"", "李小龙@例子.中国".encode(), "Zoë+∞@exämple.com".encode(), bytes(10_000)]
    items.append(rng.randbytes(100_000))
    items += [rng.randbytes(n) for n in range(0, 260, 7)]  # across SHA-512 block boundaries
    for dst in (X25519_DST, b"X", b"D" * 255, b"O" * 300):  # RFC 9380 §5.3.3: a > 255-byte DST is hashed
        c, py = _both(lambda b, dst=dst: hash_and_blind_range(items, KEY, dst, backend=b))
        assert c == py
    assert hash_and_blind_range([], KEY, backend=C) == b""


@pytest.mark.parametrize("vector", VECTORS["nu"]["vectors"], ids=lambda v: v["msg"][:8] or "empty")
def test_c_path_maps_rfc9380_j42_nu_vectors(vector: dict[str, str]) -> None:
    dst, msg = VECTORS["nu"]["dst"].encode(), vector["msg"].encode()
    # Q is the NU map's point before cofactor clearing; the C path returns X25519(key, u(Q)).
    u = int(vector["Q_x"], 16).to_bytes(32, "little")
    assert hash_and_blind_range([msg], KEY, dst, backend=C) == x25519(KEY, u)
    assert encode_to_u(msg, dst) == u


@pytest.mark.parametrize("tag_bytes", [1, 8, 12, 16, 32, 64])
def test_blind_and_tags_are_byte_identical_on_received_elements(tag_bytes: int) -> None:
    blob = _valid_blob(300)
    c, py = _both(lambda b: blind_range(blob, KEY, 17, 290, message="m", chunk=0, backend=b))
    assert c == py and len(c) == 32 * 273
    c, py = _both(lambda b: _tags(blob, 3, 300, tag_bytes, b))
    # ... and both equal the engine's tag of each blinded element (psi.group_engine.tag_of).
    blinded = blind_range(blob, KEY, 3, 300, message="m", chunk=0)
    assert c == py == b"".join(tag_of(blinded[i : i + 32], tag_bytes) for i in range(0, len(blinded), 32))


def _tags(blob: bytes, lo: int, hi: int, tag_bytes: int, backend: X25519Backend = BACKEND) -> bytes:
    return blind_range_to_tags(
        blob, KEY, lo, hi, tag_bytes, person=TAG_PERSON, message="m", chunk=0, backend=backend
    )


@FAST
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=8))
def test_random_32_byte_strings_are_accepted_or_rejected_alike(elements: list[bytes]) -> None:
    blob = b"".join(elements)
    outcomes = []
    for backend in BOTH:
        try:
            outcomes.append(blind_range(blob, KEY, 0, len(elements), message="m", chunk=1, backend=backend))
        except InvalidElementError as err:
            outcomes.append((str(err), err.index))
    assert outcomes[0] == outcomes[1]


def _invalid_encodings() -> dict[str, bytes]:
    good = encode_to_u(b"member")
    cases = {f"small-order u={u % 10**6}": u.to_bytes(32, "little") for u in sorted(SMALL_ORDER_U)}
    cases["top bit"] = good[:31] + bytes([good[31] | 0x80])
    cases["u = p"] = FIELD_P.to_bytes(32, "little")
    cases["u = p + 1"] = (FIELD_P + 1).to_bytes(32, "little")
    cases["u = 2^255 - 1"] = (2**255 - 1).to_bytes(32, "little")
    cases["twist"] = TWIST_U.to_bytes(32, "little")
    return cases


@pytest.mark.parametrize(("kind", "bad"), list(_invalid_encodings().items()), ids=list(_invalid_encodings()))
def test_each_invalid_element_kind_is_rejected_alike_at_the_same_index(kind: str, bad: bytes) -> None:
    blob = bytearray(_valid_blob(12))
    blob[7 * 32 : 8 * 32] = bad
    blob = bytes(blob)
    for call in (
        lambda b: blind_range(blob, KEY, 2, 12, message="RESPONDER_ELEMENTS", chunk=4, backend=b),
        lambda b: blind_range_to_tags(
            blob, KEY, 2, 12, 8, person=TAG_PERSON, message="RESPONDER_ELEMENTS", chunk=4, backend=b
        ),
    ):
        c, py = _rejections(call)
        assert c == py and c[1:] == (7, 4)
        assert c[0].startswith("invalid element in message 'RESPONDER_ELEMENTS', chunk 4, element 7: ")
        assert ("twist point" in c[0]) == (kind == "twist")
    # Outside the range the bad element is never looked at.
    c_out, py_out = _both(lambda b: blind_range(blob, KEY, 8, 12, message="m", chunk=0, backend=b))
    assert c_out == py_out and len(c_out) == 4 * 32


def test_wrong_blob_lengths_and_ranges_are_protocol_errors_on_both_paths() -> None:
    blob = _valid_blob(4)
    for backend in BOTH:
        with pytest.raises(PsiProtocolError, match=r"chunk 2: elements 0\.\.4 are not inside 127 bytes"):
            blind_range(blob[:-1], KEY, 0, 4, message="m", chunk=2, backend=backend)
        with pytest.raises(PsiProtocolError, match=r"elements 3\.\.5"):
            blind_range_to_tags(blob, KEY, 3, 5, 8, person=TAG_PERSON, message="m", chunk=0, backend=backend)
        with pytest.raises(ValueError, match="32 bytes, got 31"):
            hash_and_blind_range([b"a"], KEY[:31], backend=backend)
        with pytest.raises(TypeError):
            hash_and_blind_range(["not bytes"], KEY, backend=backend)  # type: ignore[list-item]


def test_engine_names_the_absolute_index_of_an_invalid_element_across_worker_ranges() -> None:
    blob = bytearray(_valid_blob(1000))
    blob[731 * 32 : 732 * 32] = TWIST_U.to_bytes(32, "little")
    with (
        GroupEngine(2) as engine,
        pytest.raises(InvalidElementError, match=r"chunk 6, element 731: twist point"),
    ):
        engine.blind_to_tags(bytes(blob), KEY, 12, message="INITIATOR", chunk=6, group=PsiGroup.X25519)


def test_concurrent_threads_get_the_reference_results() -> None:
    rng = random.Random(21)
    jobs = [([rng.randbytes(16) for _ in range(600)], rng.randbytes(32)) for _ in range(4)]
    expected = [hash_and_blind_range(items, key, backend=PY) for items, key in jobs]
    results: dict[int, tuple[bytes, bytes]] = {}

    def work(slot: int) -> None:
        items, key = jobs[slot]
        blob = hash_and_blind_range(items, key, backend=C)
        results[slot] = (blob, _tags(blob, 0, 600, 16, C))

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for slot, reference in enumerate(expected):
        blob, tags = results[slot]
        assert blob == reference
        assert tags == _tags(reference, 0, 600, 16, PY)


def test_benchmark_report_names_the_x25519_backend_that_ran() -> None:
    report = run_benchmark([300], compare_openmined=False, group=PsiGroup.X25519.value)
    row = report["results"][0]["loyalfed"]
    assert report["x25519_backend"] == row["x25519_backend"] == BACKEND.value
    assert row["correct_vs_plain_sets"] and row["matches"] == 150


def test_the_c_loops_run_without_the_gil() -> None:
    # While a worker is inside one C call, this thread keeps running Python. With the GIL held it
    # could not take a single step in the first half of the call (it lasts ≫ the 5 ms switch
    # interval, which only lets this thread in once the call has returned).
    items = [b"member-%d" % i for i in range(3000)]  # ≈ 0.1 s of X25519
    window: list[float] = []
    spins: list[float] = []

    def work() -> None:
        window.append(time.perf_counter())
        hash_and_blind_range(items, KEY, backend=C)
        window.append(time.perf_counter())

    worker = threading.Thread(target=work)
    worker.start()
    while worker.is_alive():
        spins.append(time.perf_counter())
    worker.join()
    first_half = (window[0], (window[0] + window[1]) / 2)
    assert sum(first_half[0] < t < first_half[1] for t in spins) > 1000
