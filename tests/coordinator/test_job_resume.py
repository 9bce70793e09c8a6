"""A job survives the coordinator: it resumes from its last round checkpoint, and no node pays twice.

The nodes are the real node-side handler over real partner folders, each with its own accountant;
the network is the in-process ``LocalGrid``. The "crash" comes after the nodes trained round 2 and
before the server heard back — the worst moment: the round was paid for, its replies were lost.
Resumed, the job asks for round 2 again with the same model; each node re-sends the reply it already
released (``participant_node.training.round_replies``) instead of training, and at the end every
node's accountant holds exactly the job's planned steps: none was charged twice.

Nodes that vanish are handled without a hang: the job goes on with those online while ``min_nodes``
allows, and fails with a clear reason once too few have been online for the round timeout.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
from flwr.app import Message
from local_grid import LocalGrid

from coordinator.job_errors import JobFailedError
from coordinator.job_lifecycle import run_job
from coordinator.round_checkpoint import saved_round
from participant_node.training.job_handler import NodeContext
from protocol import JobSpec

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("in_a_flower_run")]

PARTNERS = ("freshmart-east", "freshmart-north", "freshmart-south")


class CoordinatorCrash(RuntimeError):
    pass


class CrashingGrid(LocalGrid):
    """Delivers round ``crash_round``'s training requests, then dies before any reply is read."""

    def __init__(self, nodes: dict[int, NodeContext], crash_round: int) -> None:
        super().__init__(nodes)
        self.crash_round, self.crashed = crash_round, False

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        replies = super().send_and_receive(messages, timeout=timeout)
        round_of = {
            m.content["config"].get("server-round") for m in messages if m.metadata.message_type == "train"
        }
        if not self.crashed and self.crash_round in round_of:
            self.crashed = True
            raise CoordinatorCrash("the coordinator host died")
        return replies


@pytest.fixture(scope="module")
def federation(cj_federation: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("resume") / "federation"
    for partner in PARTNERS:
        shutil.copytree(cj_federation / partner, copy / partner)
    return copy


def _nodes(federation: Path, state: Path) -> dict[int, NodeContext]:
    return {
        node_id: NodeContext(federation / partner, partner_id=partner, state_dir=state / partner)
        for node_id, partner in enumerate(PARTNERS, start=11)
    }


def _job(job_id: str, **overrides: object) -> JobSpec:
    fields = {"rounds": 2, "local_steps": 2, "min_nodes": 3, "round_timeout_s": 30.0, **overrides}
    return JobSpec(job_id=job_id, **fields)  # type: ignore[arg-type]


def _spent(node: NodeContext, job: JobSpec) -> tuple[float, int]:
    entries = node.accountant.entries(dataset=node.partner_id, purpose=job.purpose, job_id=job.job_id)
    delta = min(e.delta for e in entries)
    epsilon = node.accountant.epsilon(
        dataset=node.partner_id, purpose=job.purpose, delta=delta, job_id=job.job_id
    )
    return epsilon, sum(e.steps for e in entries)


def test_a_job_resumes_from_its_checkpoint_and_no_node_pays_for_a_round_twice(
    federation: Path, tmp_path: Path
) -> None:
    job = _job("job-resume")
    nodes, checkpoints = _nodes(federation, tmp_path / "nodes"), tmp_path / "checkpoints"
    with pytest.raises(CoordinatorCrash):
        run_job(CrashingGrid(nodes, crash_round=2), job, expected_nodes=3, checkpoint_dir=checkpoints)
    assert saved_round(checkpoints) == 1
    # Round 2 was trained and paid for at every node before the crash.
    assert all(_spent(node, job)[1] == 2 * job.local_steps for node in nodes.values())

    outcome = run_job(LocalGrid(nodes), job, expected_nodes=3, checkpoint_dir=checkpoints)
    assert [r.server_round for r in outcome.rounds] == [1, 2]
    assert saved_round(checkpoints) == 2 and outcome.evaluation is not None
    for node in nodes.values():
        epsilon, steps = _spent(node, job)
        assert steps == job.rounds * job.local_steps  # round 2 was not trained a second time
        assert epsilon <= job.epsilon * 1.01  # the ε of the job's planned steps, no more
        assert outcome.spent[node.partner_id].epsilon == pytest.approx(epsilon)
        assert outcome.nodes[node.partner_id].steps == steps


class VanishingGrid(LocalGrid):
    """Nodes in ``gone`` are offline: not listed, and what is sent to them gets no reply."""

    def __init__(self, nodes: dict[int, NodeContext]) -> None:
        super().__init__(nodes)
        self.gone: set[int] = set()

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.nodes if n not in self.gone]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return super().send_and_receive(
            [m for m in messages if m.metadata.dst_node_id not in self.gone], timeout=timeout
        )


class VanishAfterRoundOne:
    """The job's progress sink: node 13's host goes after round 1."""

    def __init__(self, grid: VanishingGrid) -> None:
        self.grid = grid

    def round_finished(self, report: object) -> None:
        self.grid.gone.add(13)

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: False  # no stop requested; refusals and settlement not watched


def test_a_node_that_vanishes_leaves_the_job_to_the_others_while_min_nodes_allows(
    federation: Path, tmp_path: Path
) -> None:
    grid = VanishingGrid(_nodes(federation, tmp_path / "nodes"))
    job = _job("job-vanish", min_nodes=2, round_timeout_s=5.0)
    outcome = run_job(grid, job, expected_nodes=3, progress=VanishAfterRoundOne(grid))  # type: ignore[arg-type]
    assert [(r.server_round, r.nodes_ok) for r in outcome.rounds] == [(1, 3), (2, 2)]
    assert outcome.evaluation is not None


def test_too_few_nodes_online_fails_the_job_after_the_round_timeout_rather_than_hanging(
    federation: Path, tmp_path: Path
) -> None:
    grid = VanishingGrid(_nodes(federation, tmp_path / "nodes"))
    job = _job("job-too-few", round_timeout_s=3.0)
    with pytest.raises(JobFailedError, match=r"only 2 node\(s\) online for 3 s; the job needs 3"):
        run_job(grid, job, expected_nodes=3, progress=VanishAfterRoundOne(grid))  # type: ignore[arg-type]


class RecordingGrid(LocalGrid):
    """Notes the type of every message exchange (one entry per ``send_and_receive``)."""

    def __init__(self, nodes: dict[int, NodeContext]) -> None:
        super().__init__(nodes)
        self.exchanges: list[set[str]] = []

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        sent = list(messages)
        self.exchanges.append({m.metadata.message_type for m in sent})
        return super().send_and_receive(sent, timeout=timeout)


def test_a_job_asks_for_group_labels_with_the_feature_moments_not_in_an_exchange_of_its_own(
    federation: Path, tmp_path: Path
) -> None:
    job = _job("job-exchanges")
    grid = RecordingGrid(_nodes(federation, tmp_path / "nodes"))
    outcome = run_job(grid, job, expected_nodes=3)
    kinds = [kind for exchange in grid.exchanges for kind in exchange]
    assert len(kinds) == len(grid.exchanges)  # every exchange sends one kind of message
    # describe, moments (with the group labels), the training rounds, the evaluation, the settlement
    assert len(kinds) == 2 + job.rounds + 2 and not any("group_labels" in kind for kind in kinds)
    assert outcome.evaluation is not None and outcome.evaluation.n > 0
