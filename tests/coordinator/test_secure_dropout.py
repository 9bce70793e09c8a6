"""SecAgg+ with a node that drops out after the key and share exchange: the server reconstructs the
missing masks from the surviving nodes' shares (threshold ⌊n/2⌋ + 1) and the job goes on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from coordinator.job_outcome import JobOutcome
from coordinator.secure_server_app import make_secure_server_app
from loyalfed.federated_run import _simulate, select_partners
from participant_node.data import load_federation
from participant_node.training.secure_client_app import make_secure_client_app
from protocol import JobSpec

pytestmark = pytest.mark.slow

DROPPED = "freshmart-east"
JOB = JobSpec(
    job_id="job-test-secagg-dropout",
    task="churn",
    epsilon=3.0,
    rounds=3,
    local_steps=3,
    min_nodes=3,
    secure_agg=True,
)


def _crash_in_round_two(partition: int):
    """Inside SecAgg+: the node has shared its keys, then crashes while training in round 2."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        config = msg.content.config_records.get("fitins.config") if msg.has_content() else None
        in_round_two = config is not None and config.get("server-round") == 2
        if in_round_two and int(context.node_config["partition-id"]) == partition:
            raise RuntimeError("node crashed mid-round")
        return call_next(msg, context)

    return mod


def test_a_node_dropping_out_of_a_secure_round_does_not_stop_the_job(
    cj_federation: Path, tmp_path: Path
) -> None:
    federation = tmp_path / "federation"
    shutil.copytree(cj_federation, federation)
    partners = select_partners(load_federation(federation), None)
    dirs = [p[1] for p in partners]
    outcomes: list[JobOutcome] = []
    server = make_secure_server_app([JOB], outcome_sink=outcomes.append, expected_nodes=len(partners))
    dropped = [d.name for d in dirs].index(DROPPED)
    client = make_secure_client_app(dirs, mods=[_crash_in_round_two(dropped)])
    _simulate(server, client, len(partners))
    assert len(outcomes) == 1, "the secure job did not finish"
    outcome = outcomes[0]
    assert [(r.nodes_ok, r.nodes_failed) for r in outcome.rounds] == [(4, 0), (3, 1), (4, 0)]
    assert outcome.nodes[DROPPED].steps == 2 * JOB.local_steps  # its round-2 update never counted
    assert outcome.evaluation is not None and outcome.evaluation.auc > 0.6
