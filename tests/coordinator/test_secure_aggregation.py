"""A real SecAgg+ federated DP job on Flower's simulation engine over the four FreshMart store groups.

One simulation: each node records (at the node) the plain update it handed to SecAgg+, the server's
grid records what actually reached the coordinator. The coordinator's copies must be masked (not the
node's quantised update, spread over the whole 2^32 ring), while the model the coordinator ends with
is exactly the initial model plus the weighted means of the plain updates, and the job still yields a
useful churn model, a settled ledger and a card naming SecAgg+. The final evaluation runs under
SecAgg+ too: the card's pooled metrics come from the masked sum of the nodes' fine histograms and
match the exact figures on the same held-out members.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.serverapp import Grid

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_outcome import JobOutcome
from coordinator.job_strategy import initial_arrays, published_arrays
from coordinator.model_card import build_model_card
from coordinator.secure_server_app import make_secure_server_app, secagg_parameters
from loyalfed.federated_run import _simulate, select_partners
from models import TaskDataset, make_model, predict_proba
from models.metrics import pr_auc, roc_auc
from participant_node.data import load_federation
from participant_node.training.local_task_data import load_local_task_data
from participant_node.training.secure_client_app import make_secure_client_app
from protocol import JobSpec

pytestmark = pytest.mark.slow

# No server momentum and the last model published: the final model is then exactly the initial one
# plus the rounds' weighted mean updates, which the unmasking test reconstructs.
JOB = JobSpec(
    job_id="job-test-secagg",
    task="churn",
    epsilon=3.0,
    rounds=3,
    local_steps=5,
    min_nodes=3,
    secure_agg=True,
    server_momentum=0.0,
    average_last=1,
)


class RecordingGrid:
    """The simulation's grid, keeping every masked vector a node sends the coordinator."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.masked: list[tuple[int, list[np.ndarray]]] = []  # (node id, masked vector)

    def __getattr__(self, name: str) -> object:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            configs = reply.content.config_records.get(RECORD_KEY_CONFIGS) if reply.has_content() else None
            if configs is not None and Key.MASKED_PARAMETERS in configs:
                vector = [bytes_to_ndarray(b) for b in configs[Key.MASKED_PARAMETERS]]
                self.masked.append((reply.metadata.src_node_id, vector))
        return replies


def _record_plain_update(out: Path):
    """Client mod inside SecAgg+: write, at the node, the plain update it is about to mask."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if reply.has_content() and "fitres.parameters" in reply.content:
            update = reply.content["fitres.parameters"].to_numpy_ndarrays()
            metrics = reply.content["fitres.metrics"]
            weight = int(reply.content["fitres.num_examples"]["num_examples"])
            name = f"{metrics['node.partner-id']}-{msg.content['fitins.config']['server-round']}.npz"
            np.savez(out / name, *update, weight=weight)
        return reply

    return mod


@pytest.fixture(scope="module")
def secure_run(
    cj_federation: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[JobOutcome, RecordingGrid, Path, Path]:
    root = tmp_path_factory.mktemp("secagg")
    federation = root / "federation"
    shutil.copytree(cj_federation, federation)
    updates = root / "updates"
    updates.mkdir()
    partners = select_partners(load_federation(federation), None)
    ledger_file = root / "budget.sqlite"
    ledger = BudgetLedger(f"sqlite:///{ledger_file}")
    outcomes: list[JobOutcome] = []
    grids: list[RecordingGrid] = []

    def wrap(grid: Grid) -> Grid:
        grids.append(RecordingGrid(grid))
        return grids[-1]  # type: ignore[return-value]

    server = make_secure_server_app(
        [JOB], outcome_sink=outcomes.append, ledger=ledger, expected_nodes=len(partners), grid_wrapper=wrap
    )
    client = make_secure_client_app([p[1] for p in partners], mods=[_record_plain_update(updates)])
    _simulate(server, client, len(partners))
    ledger.close()
    assert len(outcomes) == 1, "the secure job did not finish"
    return outcomes[0], grids[0], updates, ledger_file


def _plain_updates(updates: Path, server_round: int) -> list[tuple[int, list[np.ndarray]]]:
    out = []
    for path in sorted(updates.glob(f"*-{server_round}.npz")):
        with np.load(path) as data:
            out.append((int(data["weight"]), [data[f"arr_{i}"] for i in range(len(data.files) - 1)]))
    return out


def test_the_coordinator_only_sees_masked_updates(secure_run: tuple) -> None:
    _, grid, updates, _ = secure_run
    # One masked vector per node and training round, and one per node for the final evaluation.
    assert len(grid.masked) == 4 * (JOB.rounds + 1)
    params = secagg_parameters(JOB, 4)
    for node_id, masked in grid.masked:
        flat = np.concatenate([np.ravel(a) for a in masked]).astype(np.int64)
        # Unmasked, a node's entries are quantised into [0, 2^22) (times its weight ratio ≤ 1); masked,
        # they are uniform over the 2^32 ring.
        assert np.mean(flat >= params.quantization_range) > 0.9, f"node {node_id} sent an unmasked vector"
    # What each node would have sent without masks: its weighted update, quantised as SecAgg+ does.
    unmasked = []
    for server_round in range(1, JOB.rounds + 1):
        for weight, update in _plain_updates(updates, server_round):
            ratio = round(weight / params.max_weight * params.quantization_range) / params.quantization_range
            scaled = [u * ratio for u in update]
            quantised = quantize(scaled, params.clipping_range, params.quantization_range)
            unmasked.append(np.concatenate([np.ravel(q) for q in quantised]).astype(np.int64))
    assert len(unmasked) == 4 * JOB.rounds
    received = [np.concatenate([np.ravel(a) for a in m[1:]]).astype(np.int64) for _, m in grid.masked]
    for plain in unmasked:
        assert all(np.mean(plain == seen) < 0.01 for seen in received if seen.shape == plain.shape)


def test_the_unmasked_sum_is_the_weighted_mean_of_the_plain_updates(secure_run: tuple) -> None:
    outcome, _, updates, _ = secure_run
    expected = initial_arrays(JOB).to_numpy_ndarrays()
    for server_round in range(1, JOB.rounds + 1):
        nodes = _plain_updates(updates, server_round)
        assert len(nodes) == 4
        total = sum(w for w, _ in nodes)
        for i in range(len(expected)):
            expected[i] = expected[i] + sum(w * u[i] for w, u in nodes) / total
    # The published weights take publicly scaled rows: fold the job's standardisation in likewise.
    names = list(initial_arrays(JOB).keys())
    state = {name: torch.from_numpy(np.asarray(a)) for name, a in zip(names, expected, strict=True)}
    expected = published_arrays(outcome.job, ArrayRecord(state)).to_numpy_ndarrays()
    got = outcome.arrays.to_numpy_ndarrays()
    for want, have in zip(expected, got, strict=True):
        # SecAgg+ fixed-point quantisation: step 2R / 2^22 per unit weight ratio, three rounds.
        np.testing.assert_allclose(have, want, atol=5e-3)
    assert not all(
        np.allclose(a, b) for a, b in zip(got, initial_arrays(JOB).to_numpy_ndarrays(), strict=True)
    )


def test_secure_job_yields_a_useful_model_a_settled_ledger_and_an_honest_card(secure_run: tuple) -> None:
    outcome, _, _, ledger_file = secure_run
    assert [(r.nodes_ok, r.nodes_failed) for r in outcome.rounds] == [(4, 0)] * JOB.rounds
    assert outcome.evaluation is not None and outcome.evaluation.auc > 0.6
    card = json.loads(build_model_card(outcome, members_may_overlap=False).model_dump_json())
    assert card["secure_aggregation"] is True
    protocol = card["secure_aggregation_protocol"]
    assert protocol["protocol"].startswith("SecAgg+")
    assert (protocol["num_shares"], protocol["reconstruction_threshold"]) == (4, 3)
    largest_update = JOB.learning_rate * JOB.local_steps * JOB.max_grad_norm
    assert protocol["clipping_range"] == pytest.approx(2 * largest_update)
    assert "SecAgg+" in card["mechanisms"]["model_updates"]
    assert {n["partner_id"] for n in card["nodes"]} == {
        f"freshmart-{s}" for s in ("north", "south", "east", "west")
    }
    ledger = BudgetLedger(f"sqlite:///{ledger_file}")
    for node in card["nodes"]:
        assert node["steps"] == JOB.rounds * JOB.local_steps and node["epsilon"] <= JOB.epsilon * 1.01
        assert ledger.charges(node["partner_id"], year=datetime.now(UTC).year) == [
            (JOB.job_id, "analytics.churn_model", pytest.approx(node["epsilon"]), "spent")
        ]
    ledger.close()


def test_the_card_reports_the_exact_pooled_metrics_from_the_secure_sum_of_histograms(
    secure_run: tuple, cj_federation: Path
) -> None:
    outcome, _, updates, _ = secure_run
    evaluation = outcome.evaluation
    assert evaluation is not None and evaluation.secure_sum and evaluation.noise_sigma == 0.0
    # What each node handed SecAgg+ for the final evaluation (round 0), read at the node: its sum
    # is what the coordinator worked from, and no node's vector reached the coordinator.
    layout_length = len(np.load(next(updates.glob("*-0.npz")))["arr_0"])
    assert len(list(updates.glob("*-0.npz"))) == 4
    # The exact pooled AUC of the published model over every node's held-out members.
    # The published weights take publicly scaled rows (the standardisation is folded in).
    job = outcome.job.model_copy(update={"feature_mean": None, "feature_scale": None})
    nodes = [
        load_local_task_data(p[1], job, at=datetime.now(UTC).replace(tzinfo=None))
        for p in select_partners(load_federation(cj_federation), None)
    ]
    heldout = TaskDataset.concatenate(d.heldout for d in nodes)
    model = make_model(job.model, heldout.X.shape[1])
    model.load_state_dict(outcome.arrays.to_torch_state_dict())
    scores = predict_proba(model, heldout.X)
    assert evaluation.n == len(heldout) and layout_length > 3 * 1000
    assert evaluation.auc == pytest.approx(roc_auc(heldout.y, scores), abs=0.01)
    assert evaluation.pr_auc == pytest.approx(pr_auc(heldout.y, scores), abs=0.01)
    assert evaluation.brier == pytest.approx(float(np.mean((scores - heldout.y) ** 2)), abs=1e-6)
    card = build_model_card(outcome, members_may_overlap=False)
    assert card.metrics is not None and "SecAgg+" in card.mechanisms["evaluation_histograms"]
    assert card.metrics.calibration is not None and len(card.metrics.calibration.members) == 10


def test_a_card_claims_secure_aggregation_only_when_secagg_ran() -> None:
    # A secure_agg job run by the plain ServerApp (e.g. a deployment that does not wire SecAgg+) is
    # reported as what it was: aggregated in clear.
    card = build_model_card(JobOutcome(job=JOB), members_may_overlap=False)
    assert card.secure_aggregation is False and card.secure_aggregation_protocol is None
    assert "SecAgg+" not in card.mechanisms["model_updates"]
