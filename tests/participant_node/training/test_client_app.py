"""The node's ClientApp as Flower's simulation ships it: pickled with every message it serves.

``flwr.server.superlink.fleet.vce.backend.raybackend`` hands Ray the callable that returns the
ClientApp with each message, so Ray pickles the app (and what its closures hold) once per message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import ray.cloudpickle as cloudpickle
from flwr.app import Context, Message, RecordDict

from participant_node.training.client_app import make_client_app
from protocol import JobSpec, NodeRecord, QueryAction, RecordKey, job_config_record, query_type

PARTNERS = ("freshmart-east", "freshmart-north", "freshmart-south")


@pytest.mark.usefixtures("in_a_flower_run")
def test_the_app_ships_its_folders_as_strings_and_serves_each_node_its_own(
    cj_federation: Path, tmp_path: Path
) -> None:
    dirs = [tmp_path / p for p in PARTNERS]
    for partner, folder in zip(PARTNERS, dirs, strict=True):
        shutil.copytree(cj_federation / partner, folder)
    app = make_client_app(dirs)
    payload = cloudpickle.dumps(lambda: app)  # as vce_api's ``_load`` is pickled per message
    # Path objects cost tens of microseconds each to unpickle: at 1,000 nodes, 25-60 ms a message.
    assert b"pathlib" not in payload
    shipped = cloudpickle.loads(payload)()
    content = RecordDict({RecordKey.CONFIG: job_config_record(JobSpec(job_id="shipped-app"))})
    for partition, partner in enumerate(PARTNERS):
        message = Message(content, dst_node_id=7, message_type=query_type(QueryAction.DESCRIBE))
        context = Context(
            run_id=1,
            node_id=7,
            node_config={"partition-id": partition, "num-partitions": len(PARTNERS)},
            state=RecordDict(),
            run_config={},
        )
        assert NodeRecord.parse(shipped(message, context).content).partner_id == partner
