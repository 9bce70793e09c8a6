"""``PromptGrid``: Flower's send-and-receive contract (every reply, or the timeout) with a short poll.

The nodes are real node handlers over copies of the demo's partner folders (``LocalGrid``); time is
injected, so the test counts polls instead of sleeping.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flwr.app import Message, RecordDict
from local_grid import Fate, LocalGrid

from coordinator.prompt_grid import PromptGrid, send_and_receive
from participant_node.training.job_handler import NodeContext
from protocol import JobSpec, NodeRecord, QueryAction, RecordKey, job_config_record, query_type

pytestmark = pytest.mark.usefixtures("in_a_flower_run")

PARTNERS = ("freshmart-east", "freshmart-north", "freshmart-south")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def nodes(cj_federation: Path, tmp_path: Path) -> dict[int, NodeContext]:
    out = {}
    for node_id, partner in enumerate(PARTNERS, start=1):
        shutil.copytree(cj_federation / partner, tmp_path / partner)
        state = tmp_path / f"{partner}.state"
        out[node_id] = NodeContext(tmp_path / partner, partner_id=partner, state_dir=state)
    return out


def _describe_all(node_ids: list[int]) -> list[Message]:
    content = RecordDict({RecordKey.CONFIG: job_config_record(JobSpec(job_id="prompt-grid"))})
    kind = query_type(QueryAction.DESCRIBE)
    return [Message(content, dst_node_id=n, message_type=kind) for n in node_ids]


def test_every_reply_arrives_without_a_single_poll_interval(nodes: dict[int, NodeContext]) -> None:
    clock = _Clock()
    grid = PromptGrid(LocalGrid(nodes), clock=clock, sleep=clock.sleep)
    replies = list(grid.send_and_receive(_describe_all(list(nodes)), timeout=300))
    assert sorted(NodeRecord.parse(r.content).partner_id for r in replies) == sorted(PARTNERS)
    assert clock.sleeps == []  # all replies were in at the first pull: no waiting at all


def test_a_lost_reply_ends_the_wait_at_the_timeout_polling_every_interval(
    nodes: dict[int, NodeContext],
) -> None:
    clock = _Clock()
    lost = LocalGrid(nodes, lambda node, _message: Fate.LOST if node == 2 else Fate.DELIVERED)
    grid = PromptGrid(lost, poll_interval_s=0.2, clock=clock, sleep=clock.sleep)
    replies = list(grid.send_and_receive(_describe_all(list(nodes)), timeout=3.0))
    assert sorted(r.metadata.src_node_id for r in replies) == [1, 3]
    assert clock.sleeps == pytest.approx([0.2] * 15) and clock.now == pytest.approx(3.0)


def test_the_pause_rule_sees_the_replies_outstanding_and_no_wait_runs_past_the_deadline(
    nodes: dict[int, NodeContext],
) -> None:
    clock, outstanding = _Clock(), []

    def pause(waiting: int) -> float:
        outstanding.append(waiting)
        return 0.4

    lost = LocalGrid(nodes, lambda node, _message: Fate.LOST if node in (1, 3) else Fate.DELIVERED)
    replies = send_and_receive(
        lost, _describe_all(list(nodes)), timeout=1.0, pause=pause, clock=clock, sleep=clock.sleep
    )
    assert [r.metadata.src_node_id for r in replies] == [2]
    assert outstanding == [2, 2, 2]
    assert clock.sleeps == pytest.approx([0.4, 0.4, 0.2]) and clock.now == pytest.approx(1.0)


def test_the_poll_interval_must_be_positive(nodes: dict[int, NodeContext]) -> None:
    with pytest.raises(ValueError, match="poll_interval_s must be > 0"):
        PromptGrid(LocalGrid(nodes), poll_interval_s=0)
