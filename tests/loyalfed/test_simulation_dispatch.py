"""The simulation's message dispatch: every message reaches its node once, at one ask per message.

Set up as ``flwr.simulation.run_simulation`` sets up its in-memory LinkState (a run, its primary
task, registered virtual nodes, the ServerApp's InMemoryGrid), without starting Ray: the grid pushes
a round of messages, ``dispatch_messages`` runs in a thread, and the queue receives what a
simulation worker would be handed.
"""

from __future__ import annotations

import threading
import time
from queue import Empty, Queue
from typing import Any

import pytest
from flwr.app import Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.proto.task_pb2 import Task  # type: ignore[attr-defined]
from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid.inmemory_grid import InMemoryGrid

from loyalfed.simulation_dispatch import dispatch_messages, paced_pause, paced_send_and_receive

NODES = 100


def _federation(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, InMemoryGrid, dict[int, int]]:
    # run_simulation's task identity for its legacy Python API (process-wide: restored after the test);
    # the ServerApp is the SuperLink's node (the in_a_flower_run fixture's node 0 is no registered node,
    # so the LinkState would drop every message as leaving the federation).
    for name, value in (("_task_id", 1), ("_run_id", 7), ("_node_id", SUPERLINK_NODE_ID)):
        monkeypatch.setattr(TaskIdentity, name, value)
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    run = Run.create_empty(run_id=7)
    run.primary_task_id, run.federation_id = 11, NOOP_FEDERATION_ID
    state = factory.state()
    state.run_ids[run.run_id] = RunRecord(run=run)  # as run_simulation pre-registers its run
    state.task_store[11] = Task(task_id=11, run_id=run.run_id)
    nodes = _register_nodes(NODES, factory)
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    return state, grid, nodes


def _received(queue: Queue[Message], count: int, timeout_s: float = 30.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(queue.get(timeout=0.2))
        except Empty:
            continue
    return got


def _falls_quiet(asks: dict[str, int], *, within_s: float = 15.0) -> bool:
    """No ask for a whole second, within ``within_s`` (a loaded machine delays the last asks)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        seen = asks["count"]
        time.sleep(1.0)
        if asks["count"] == seen:
            return True
    return False


def test_each_message_reaches_its_node_once_at_one_check_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, grid, nodes = _federation(monkeypatch)
    checks, scans = {"count": 0}, {"count": 0}
    check, scan = state._check_stored_messages, state.get_message_ins

    def counted_check(message_ids: set[str], run_id: int | None = None) -> None:
        checks["count"] += len(message_ids)
        check(message_ids, run_id)

    def counted_scan(**kwargs: Any) -> Any:
        scans["count"] += 1
        return scan(**kwargs)

    state._check_stored_messages, state.get_message_ins = counted_check, counted_scan
    queue: Queue[Message] = Queue()
    stop = threading.Event()
    dispatcher = threading.Thread(target=dispatch_messages, args=(state, queue, nodes, stop), daemon=True)
    # Round 1 is stored before the dispatcher starts (it must find it in the store), round 2 after.
    sent = list(grid.push_messages(Message(RecordDict(), n, "train") for n in nodes))
    dispatcher.start()
    try:
        for round_ in (1, 2):
            before = checks["count"] if round_ == 2 else 0
            if round_ == 2:
                sent = list(grid.push_messages(Message(RecordDict(), n, "train") for n in nodes))
            got = _received(queue, len(sent))
            assert sorted(m.metadata.message_id for m in got) == sorted(sent), f"round {round_}"
            assert sorted(m.metadata.dst_node_id for m in got) == sorted(nodes)
            # Once every node was handed its message, the dispatcher falls quiet (Flower's own loop
            # asks every node every 0.1 s whether anything was sent or not).
            assert _falls_quiet(checks), "the dispatcher keeps checking while no message is sent"
            assert queue.empty(), "a message was handed out twice"
            # Flower's check of each message once; no ask walking every stored message.
            assert checks["count"] - before == NODES and scans["count"] == 0
            grid.state.delete_messages(message_ins_ids=set(sent))
    finally:
        stop.set()
        dispatcher.join(timeout=5)


def test_an_expired_message_is_dropped_not_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    state, grid, nodes = _federation(monkeypatch)
    first, second = list(nodes)[:2]
    expired = Message(RecordDict(), first, "train")
    expired.metadata.ttl = 0.5
    [expired_id] = grid.push_messages([expired])
    time.sleep(0.6)
    [live_id] = grid.push_messages([Message(RecordDict(), second, "train")])
    queue: Queue[Message] = Queue()
    stop = threading.Event()
    dispatcher = threading.Thread(target=dispatch_messages, args=(state, queue, nodes, stop), daemon=True)
    dispatcher.start()
    try:
        assert [m.metadata.message_id for m in _received(queue, 1)] == [live_id]
        assert _received(queue, 1, timeout_s=1.0) == []
        assert expired_id not in state.message_ins_store  # deleted by Flower's own check
    finally:
        stop.set()
        dispatcher.join(timeout=5)


def test_the_in_memory_grid_pulls_at_a_pace_set_by_the_replies_outstanding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _state, grid, nodes = _federation(monkeypatch)
    pulls = {"count": 0}
    pull = grid.pull_messages

    def counted_pull(message_ids: Any) -> Any:
        pulls["count"] += 1
        return pull(message_ids)

    monkeypatch.setattr(grid, "pull_messages", counted_pull)
    # 0.1 s (Flower's own interval) for a few replies, 2 ms per reply above 50, 2 s at most.
    assert [paced_pause(n) for n in (1, 50, 100, 1000, 10**6)] == [0.1, 0.1, 0.2, 2.0, 2.0]
    started = time.monotonic()
    # No node answers: the wait ends at the timeout, having pulled every 0.2 s (100 outstanding).
    replies = paced_send_and_receive(grid, (Message(RecordDict(), n, "train") for n in nodes), timeout=1.0)
    assert replies == [] and 1.0 <= time.monotonic() - started < 3.0
    assert 5 <= pulls["count"] <= 6
