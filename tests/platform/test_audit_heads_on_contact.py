"""Node and coordinator check each other's audit log heads on every heartbeat (RFC 9162 §8.3).

The real coordinator service (uvicorn on loopback) and a node's real heartbeat code with its own
audit log: the heads advance with consistency proofs; a node log rolled back to an older copy, or
forked after one, is refused by the coordinator (HTTP 409 naming the reason) and raises an
``audit.alarm`` in the coordinator's log; a coordinator log rolled back to an older copy is caught
by the node, which records the alarm in its own log and stops trusting the coordinator. A node
that lost its state folder is refused until its own data officer vouches for the loss (the CLI's
``loyalfed node audit-reset``); the coordinator's log then names the head it forgot.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from audit import AuditLog, EventType
from coordinator.service import CoordinatorSettings
from coordinator.store.database import open_store
from coordinator.store.tables import NodeRow
from loyalfed.cli.app import app
from participant_node.service.audit_heartbeat import AuditHeartbeat
from participant_node.service.coordinator_client import CoordinatorClient
from participant_node.service.errors import CoordinatorDistrustedError, CoordinatorUnavailableError
from participant_node.service.node_audit import NodeAudit
from tests.coordinator.service.coordinator_federation import PARTNERS, live_server, populate

NORTH, SOUTH = PARTNERS


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite file (the backup API includes what is still in the WAL)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _node_copy(node: Path, target: Path) -> None:
    """The node's whole state folder as a backup would hold it (log, key, kept heads)."""
    shutil.copytree(node, target, ignore=shutil.ignore_patterns("audit.sqlite*"))
    _sqlite_copy(node / "audit.sqlite", target / "audit.sqlite")


def _register_node_row(settings: CoordinatorSettings) -> None:
    # This test runs no SuperLink, so the node's row is written as registration would write it.
    engine, sessions = open_store(settings.store_url())
    with sessions() as session:
        session.add(
            NodeRow(
                partner_id=NORTH, version="0.1.0", api_url="https://127.0.0.1:1", tls_certificate_pem="",
                supernode_public_key_pem="", registered_at=datetime.now(UTC),
            )
        )  # fmt: skip
        session.commit()
    engine.dispose()


def _heartbeats(
    url: str, token: str, audit: NodeAudit, state: Path
) -> tuple[AuditHeartbeat, CoordinatorClient]:
    client = CoordinatorClient(url, token=token)
    return AuditHeartbeat(client, audit, state=state, partner_id=NORTH, version="0.1.0"), client


def _node_log_head(settings: CoordinatorSettings) -> int:
    engine, sessions = open_store(settings.store_url())
    with sessions() as session:
        stored = session.get(NodeRow, NORTH)
        assert stored is not None and stored.audit_tree_head is not None
        size = int(stored.audit_tree_head["head"]["tree_size"])  # type: ignore[index]
    engine.dispose()
    return size


def test_rolled_back_logs_are_caught_at_both_ends(tmp_path: Path) -> None:
    settings = CoordinatorSettings(state_dir=tmp_path / "coordinator", superlink=False)
    node_state = tmp_path / "node"
    node_state.mkdir(mode=0o700)
    audit = NodeAudit(node_state, NORTH)
    with live_server(settings) as url:
        with httpx.Client(base_url=url) as http:
            federation = populate(http, (settings.state_dir / "admin.token").read_text().strip())
        _register_node_row(settings)
        token = federation.tokens[f"node-{NORTH}"]
        beats, client = _heartbeats(url, token, audit, node_state)
        for _ in range(3):
            audit.record(EventType.NODE_REGISTERED)
        beats.beat()  # first contact: each side pins the other's log key and head
        _node_copy(node_state, tmp_path / "node-backup")  # the node's log at size 3
        _sqlite_copy(settings.state_dir / "audit.sqlite", tmp_path / "coordinator-backup.sqlite")
        audit.record(EventType.NODE_REGISTERED)
        audit.record(EventType.NODE_REGISTERED)
        beats.beat()
        beats.beat()  # the second contact brings the proof 3 -> 5
        assert _node_log_head(settings) == 5

        # The node's state folder restored from the backup: its log is back at size 3.
        rolled_back = NodeAudit(tmp_path / "node-backup", NORTH)
        stale, stale_client = _heartbeats(url, token, rolled_back, tmp_path / "node-backup")
        with pytest.raises(CoordinatorUnavailableError, match=r"HTTP 409 .*smaller than size 5"):
            stale.beat()
        rolled_back.close()
        # A fork: the backup extended with other entries to size 6; refused once it must prove 5 -> 6.
        forked_state = tmp_path / "node-fork"
        _node_copy(tmp_path / "node-backup", forked_state)
        forked = NodeAudit(forked_state, NORTH)
        for _ in range(3):
            forked.record(EventType.JOB_REFUSED)
        fork_beats, fork_client = _heartbeats(url, token, forked, forked_state)
        fork_beats.beat()  # the coordinator keeps size 5 and asks for a proof from it
        with pytest.raises(CoordinatorUnavailableError, match=r"HTTP 409 .*not consistent"):
            fork_beats.beat()
        forked.close()
        for other in (stale_client, fork_client):
            other.close()
        assert _node_log_head(settings) == 5
        beats.beat()  # the genuine node carries on; it has seen the coordinator's alarms (size +2)
        client.close()

    with AuditLog.open(settings.state_dir / "audit.sqlite") as log:
        alarms = [e for _, e in log.iter_events() if e.event_type == EventType.AUDIT_ALARM]
    assert [(e.partner, e.details) for e in alarms] == [(NORTH, {"log": "node"})] * 2

    # The coordinator's log restored from the backup taken before the alarms.
    _sqlite_copy(tmp_path / "coordinator-backup.sqlite", settings.state_dir / "audit.sqlite")
    with live_server(settings) as url:
        beats, client = _heartbeats(url, token, audit, node_state)
        with pytest.raises(CoordinatorDistrustedError, match="rolled back"):
            beats.beat()
        client.close()
    audit.close()
    with AuditLog.open(node_state / "audit.sqlite") as node_log:
        last = [e for _, e in node_log.iter_events()][-1]
    assert (last.event_type, last.details) == (EventType.AUDIT_ALARM, {"log": "coordinator"})
    assert (node_state / "coordinator_tree_head.json").stat().st_mode & 0o777 == 0o600


def test_a_node_that_lost_its_state_rejoins_once_its_own_officer_vouches_for_it(tmp_path: Path) -> None:
    settings = CoordinatorSettings(state_dir=tmp_path / "coordinator", superlink=False)
    node_state = tmp_path / "node"
    node_state.mkdir(mode=0o700)
    audit = NodeAudit(node_state, NORTH)
    with live_server(settings) as url, httpx.Client(base_url=url) as http:
        federation = populate(http, (settings.state_dir / "admin.token").read_text().strip())
        _register_node_row(settings)
        token = federation.tokens[f"node-{NORTH}"]
        beats, client = _heartbeats(url, token, audit, node_state)
        for _ in range(4):
            audit.record(EventType.NODE_REGISTERED)
        beats.beat()
        assert _node_log_head(settings) == 4
        with AuditLog.open(node_state / "audit.sqlite") as node_log:
            lost_head = node_log.tree_head()
        client.close()
        audit.close()

        # The disk is gone: the node starts over in an empty folder, with a new log and a new key.
        new_state = tmp_path / "node-rebuilt"
        new_state.mkdir(mode=0o700)
        rebuilt = NodeAudit(new_state, NORTH)
        rebuilt.record(EventType.NODE_REGISTERED)
        new_beats, new_client = _heartbeats(url, token, rebuilt, new_state)
        with pytest.raises(CoordinatorUnavailableError, match=r"HTTP 409"):
            new_beats.beat()
        # Neither the node itself nor another partner's officer may vouch; only known reasons.
        path, lost = f"/nodes/{NORTH}/audit-reset", {"reason": "state_lost"}
        assert federation.call(f"node-{NORTH}", "POST", path, json=lost).status_code == 403
        assert federation.call(f"officer-{SOUTH}", "POST", path, json=lost).status_code == 403
        assert federation.call(f"officer-{NORTH}", "POST", path, json={"reason": "oops"}).status_code == 422
        assert _node_log_head(settings) == 4  # nothing was forgotten by the refused requests

        officer = federation.tokens[f"officer-{NORTH}"]
        args = ["node", "audit-reset", "--partner", NORTH, "--reason", "state_lost", "--json"]
        result = CliRunner().invoke(app, [*args, "--url", url, "--token", officer])
        assert result.exit_code == 0, result.output
        reply = json.loads(result.stdout)
        assert (reply["forgotten_tree_size"], reply["forgotten_root_hash"]) == (4, lost_head.root_hash)
        new_beats.beat()  # pinned anew: the rebuilt node's log key and head
        rebuilt.record(EventType.NODE_REGISTERED)
        new_beats.beat()
        new_beats.beat()  # and from then on checked as before: the proof 1 -> 2 (+ the coordinator's)
        assert _node_log_head(settings) >= 2
        new_client.close()
    rebuilt.close()

    with AuditLog.open(settings.state_dir / "audit.sqlite") as log:
        (reset,) = [e for _, e in log.iter_events() if e.event_type == EventType.NODE_AUDIT_RESET]
    assert (reset.partner, reset.actor, reset.role) == (NORTH, f"officer-{NORTH}", "data_officer")
    assert reset.details == {"reason": "state_lost", "forgotten_tree_size": 4}
    assert {i.name: i.fingerprint for i in reset.inputs} == {
        "audit log root forgotten": lost_head.root_hash,
        "audit log key forgotten": lost_head.log_id,
    }
