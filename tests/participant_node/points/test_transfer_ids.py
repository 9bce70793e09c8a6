"""Minted transfer ids: time-ordered, unique, and accepted by the wire's transfer-id check."""

from __future__ import annotations

import time

from participant_node.points.transfer_ids import new_transfer_id
from participant_node.points.wire import check_transfer_id


def test_ids_minted_later_sort_after_earlier_ones() -> None:
    earlier = [new_transfer_id() for _ in range(200)]
    time.sleep(0.002)  # the time prefix counts milliseconds
    later = [new_transfer_id() for _ in range(200)]
    assert max(earlier) < min(later)


def test_ids_are_unique_and_pass_the_wire_check() -> None:
    ids = [new_transfer_id() for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    for transfer_id in ids[:500]:
        assert check_transfer_id(transfer_id) == transfer_id
        assert len(transfer_id) == 32


def test_the_prefix_is_the_minting_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    minted = int(new_transfer_id()[:12], 16)
    after = time.time_ns() // 1_000_000
    assert before <= minted <= after
