"""GroupCommit's pipeline: batches prepare one at a time, in order; their finishing overlaps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from participant_node.points.group_commit import GroupCommit


class _Recorder:
    """prepare/finish that record how many run at once; finish holds until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.preparing = self.most_preparing = 0
        self.finishing = self.most_finishing = 0
        self.prepared: list[list[int]] = []
        self.release = threading.Event()
        self.two_finishing = threading.Event()

    def prepare(self, items: list[int]) -> list[int]:
        with self.lock:
            self.preparing += 1
            self.most_preparing = max(self.most_preparing, self.preparing)
            self.prepared.append(list(items))
        with self.lock:
            self.preparing -= 1
        return [i * 10 for i in items]

    def finish(self, prepared: list[int]) -> list[int]:
        with self.lock:
            self.finishing += 1
            self.most_finishing = max(self.most_finishing, self.finishing)
            if self.finishing >= 2:
                self.two_finishing.set()
        self.release.wait(timeout=10)
        with self.lock:
            self.finishing -= 1
        return [p + 1 for p in prepared]


def test_a_second_batch_is_prepared_while_the_first_waits_in_finish() -> None:
    recorder = _Recorder()
    group: GroupCommit[int, list[int], int] = GroupCommit(recorder.prepare, recorder.finish, in_flight=2)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(group.submit, [1, 2])
        assert not recorder.two_finishing.wait(0.2) and recorder.finishing == 1
        second = pool.submit(group.submit, [3])
        assert recorder.two_finishing.wait(5), "the second batch did not overlap the first"
        recorder.release.set()
        assert first.result(timeout=10) == [11, 21]
        assert second.result(timeout=10) == [31]
    assert recorder.most_preparing == 1
    assert recorder.most_finishing == 2
    assert recorder.prepared == [[1, 2], [3]]


def test_in_flight_bounds_the_batches_waiting_and_every_caller_gets_its_own_results() -> None:
    recorder = _Recorder()
    recorder.release.set()
    group: GroupCommit[int, list[int], int] = GroupCommit(
        recorder.prepare, recorder.finish, in_flight=3, max_batch=4
    )
    with ThreadPoolExecutor(32) as pool:
        futures = {k: pool.submit(group.submit, [k, k + 1000]) for k in range(200)}
        answers = {k: f.result(timeout=30) for k, f in futures.items()}
    assert answers == {k: [k * 10 + 1, (k + 1000) * 10 + 1] for k in range(200)}
    assert recorder.most_preparing == 1
    assert recorder.most_finishing <= 3
    assert sorted(i for batch in recorder.prepared for i in batch) == sorted(
        i for k in range(200) for i in (k, k + 1000)
    )


def test_a_failed_prepare_fails_its_batch_only_and_the_pipeline_goes_on() -> None:
    def prepare(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky batch")
        return items

    group: GroupCommit[int, list[int], int] = GroupCommit(prepare, lambda p: p, in_flight=2)
    with pytest.raises(ValueError, match="unlucky batch"):
        group.submit([13])
    assert group.submit([7]) == [7]


def test_in_flight_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="in_flight must be at least 1"):
        GroupCommit(lambda i: i, lambda p: p, in_flight=0)
