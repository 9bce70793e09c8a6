"""ε charged exactly once, by the node's own accountant: the ledger settles from what each node's
accountant says the job spent, whatever happened to the replies on the way.

Every node here is the real node-side handler over a real partner folder with its own accountant;
only the network is the in-process ``LocalGrid``, which loses or delays replies on purpose.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flwr.app import Message
from local_grid import Fate, LocalGrid

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_errors import JobFailedError, JobRefusedError, JobStoppedError
from coordinator.job_lifecycle import run_job
from coordinator.job_outcome import RoundReport
from coordinator.job_progress import NoProgress
from participant_node.training.heldout_release import heldout_dataset
from participant_node.training.job_handler import NodeContext
from protocol import JobSpec, PrivacySpentReply, Refusal

pytestmark = pytest.mark.usefixtures("in_a_flower_run")

PARTNERS = ("freshmart-east", "freshmart-north", "freshmart-south", "freshmart-west")


@pytest.fixture(scope="module")
def federation(cj_federation: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("settlement") / "federation"
    shutil.copytree(cj_federation, copy)
    return copy


@pytest.fixture
def nodes(federation: Path, tmp_path: Path) -> dict[int, NodeContext]:
    """Node id -> a node over each store group's folder, each with its own fresh accountant."""
    return {
        node_id: NodeContext(federation / partner, partner_id=partner, state_dir=tmp_path / partner)
        for node_id, partner in enumerate(PARTNERS, start=11)
    }


@pytest.fixture
def ledger(tmp_path: Path) -> BudgetLedger:
    book = BudgetLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield book
    book.close()


def _job(job_id: str, **overrides: object) -> JobSpec:
    fields = {"rounds": 3, "local_steps": 2, "min_nodes": 3, "round_timeout_s": 30.0, **overrides}
    return JobSpec(job_id=job_id, **fields)  # type: ignore[arg-type]


def _accountant_epsilon(node: NodeContext, job: JobSpec) -> float:
    """The job's ε at the node: the larger of its training and held-out members' (disjoint sets)."""
    entries = node.accountant.entries(dataset=node.partner_id, purpose=job.purpose, job_id=job.job_id)
    delta = min((e.delta for e in entries), default=job.delta)
    return max(
        node.accountant.epsilon(dataset=dataset, purpose=job.purpose, delta=delta, job_id=job.job_id)
        for dataset in (node.partner_id, heldout_dataset(node.partner_id))
    )


def _ledger_epsilon(ledger: BudgetLedger, partner: str, job: JobSpec) -> float:
    (charge,) = [c for c in ledger.charges(partner, year=datetime.now(UTC).year) if c[0] == job.job_id]
    assert charge[3] == "spent"
    return charge[2]


def _assert_ledger_equals_accountants(
    ledger: BudgetLedger, nodes: dict[int, NodeContext], job: JobSpec
) -> None:
    for node in nodes.values():
        assert _ledger_epsilon(ledger, node.partner_id, job) == pytest.approx(_accountant_epsilon(node, job))


def _lost_in_round(server_round: int, node_ids: set[int]):
    def fate(node: int, message: Message) -> Fate:
        if message.metadata.message_type != "train" or node not in node_ids:
            return Fate.DELIVERED
        return Fate.LOST if message.content["config"]["server-round"] == server_round else Fate.DELIVERED

    return fate


class _Recorder(NoProgress):
    def __init__(self) -> None:
        self.rounds: list[RoundReport] = []
        self.refusals: list[Refusal] = []
        self.settled: dict[str, PrivacySpentReply] = {}

    def round_finished(self, report: RoundReport) -> None:
        self.rounds.append(report)

    def node_refused(self, job_id: str, refusal: Refusal) -> None:
        self.refusals.append(refusal)

    def budget_settled(self, job_id: str, spent: dict[str, PrivacySpentReply]) -> None:
        self.settled = spent


def test_lost_and_late_replies_are_still_charged(nodes: dict[int, NodeContext], ledger: BudgetLedger) -> None:
    job = _job("job-lost-and-late", min_nodes=2)

    def fate(node: int, message: Message) -> Fate:
        train = message.metadata.message_type == "train"
        if not train or message.content["config"]["server-round"] != 2:
            return Fate.DELIVERED
        return {11: Fate.LOST, 12: Fate.LATE}.get(node, Fate.DELIVERED)

    progress = _Recorder()
    outcome = run_job(LocalGrid(nodes, fate), job, expected_nodes=4, ledger=ledger, progress=progress)
    assert [(r.nodes_ok, r.nodes_failed) for r in outcome.rounds] == [(4, 0), (2, 2), (4, 0)]
    assert [r.server_round for r in progress.rounds] == [1, 2, 3] and set(progress.settled) == set(PARTNERS)
    _assert_ledger_equals_accountants(ledger, nodes, job)
    for node in (nodes[11], nodes[12]):
        # East's round-2 update never arrived and north's came after the round closed, but each
        # accountant charged all three rounds before computing the update: so does the ledger.
        steps = node.accountant.steps_taken(dataset=node.partner_id, purpose=job.purpose, job_id=job.job_id)
        assert steps == 3 * job.local_steps == outcome.nodes[node.partner_id].steps


def test_an_aborted_round_is_charged_and_the_failed_job_settled(
    nodes: dict[int, NodeContext], ledger: BudgetLedger
) -> None:
    job = _job("job-aborted-round")
    grid = LocalGrid(nodes, _lost_in_round(2, {11, 12}))  # 2 of 4 answer; the job needs 3
    with pytest.raises(JobFailedError, match="round 2: only 2 of 4 nodes answered; the job needs 3"):
        run_job(grid, job, expected_nodes=4, ledger=ledger)
    _assert_ledger_equals_accountants(ledger, nodes, job)
    for node in nodes.values():  # every node trained (and paid for) rounds 1 and 2
        assert (
            node.accountant.steps_taken(dataset=node.partner_id, purpose=job.purpose, job_id=job.job_id) == 4
        )
        assert _ledger_epsilon(ledger, node.partner_id, job) < job.epsilon  # below the reservation


def test_a_refusal_stops_the_job_with_the_nodes_reason_and_settles(
    nodes: dict[int, NodeContext], ledger: BudgetLedger
) -> None:
    job = _job("job-refused", standardise=False)
    west = nodes[14]
    # West's accountant already spent this job's whole ε (e.g. an earlier attempt): it refuses to train.
    west.accountant.charge(
        dataset=west.partner_id, purpose=job.purpose, job_id=job.job_id, noise_multiplier=0.5,
        sample_rate=1.0, steps=10, delta=1e-5, epsilon_cap=1000.0,
    )  # fmt: skip
    progress = _Recorder()
    with pytest.raises(JobRefusedError, match=r"refused by node freshmart-west: .*refuses to train further"):
        run_job(LocalGrid(nodes), job, expected_nodes=4, ledger=ledger, progress=progress)
    assert [r.partner_id for r in progress.refusals] == ["freshmart-west"]
    _assert_ledger_equals_accountants(ledger, nodes, job)


def test_a_stopped_job_is_settled_and_a_silent_node_keeps_its_reservation(
    nodes: dict[int, NodeContext], ledger: BudgetLedger
) -> None:
    job = _job("job-stopped", standardise=False)

    class StopAfterRoundOne(_Recorder):
        def stop_requested(self, job_id: str) -> bool:
            return len(self.rounds) >= 1

    def silent_at_settlement(node: int, message: Message) -> Fate:
        settling = message.metadata.message_type == "query.privacy_spent"
        return Fate.LOST if node == 13 and settling else Fate.DELIVERED

    progress = StopAfterRoundOne()
    with pytest.raises(JobStoppedError, match="before round 2"):
        run_job(
            LocalGrid(nodes, silent_at_settlement), job, expected_nodes=4, ledger=ledger, progress=progress
        )
    assert set(progress.settled) == set(PARTNERS) - {"freshmart-south"}
    _assert_ledger_equals_accountants(ledger, {k: v for k, v in nodes.items() if k != 13}, job)
    (charge,) = ledger.charges("freshmart-south", year=datetime.now(UTC).year)
    assert charge[2:] == (job.epsilon, "reserved")  # never less than the node may have spent
