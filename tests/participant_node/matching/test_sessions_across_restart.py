"""A PSI session id never reopens, even after the node restarts; a run cut by the stop is aborted.

The node's real API (``create_node_api`` over mTLS, its state folder on disk) answers freshmart:
one run completes, one is closed early, one is left open when the node stops. A new node process
on the same state folder refuses all three ids (409, naming how each ended), records the run it was
stopped in as aborted in its audit log, and keeps the session ledger 0600.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from conftest import Pki, _free_port
from test_matching_service import SECRET, Clock, _client, _service

from audit import AuditLog, EventType
from participant_node.data import PartnerData, load_partner
from participant_node.matching.tls_scope import node_server_config
from participant_node.service.node_api import create_node_api
from participant_node.service.node_audit import NodeAudit
from policies.purpose import Purpose
from psi.wire import PsiMode, Reveal

MEMBERS = 120


def _careplus(folder: Path) -> PartnerData:
    """120 members active last month, all consenting to cross-brand matching with the federation."""
    folder.mkdir(parents=True)
    recent = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    ids = [f"c{i}" for i in range(MEMBERS)]
    (folder / "members.csv").write_text(
        "member_id,phone,joined_at\n" + "".join(f"{m},+86138{i:08d},2020-01-01\n" for i, m in enumerate(ids))
    )
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount\n" + "".join(f"{m},{recent}T10:00:00,3.50\n" for m in ids)
    )
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at,scope\n"
        + "".join(f"{m},marketing.cross_brand_matching,2020-01-01,federation\n" for m in ids)
    )
    return load_partner(folder)


@contextmanager
def _node(pki: Pki, state: Path, data: PartnerData) -> Iterator[str]:
    """One node process's API on a free port; stopped (and its audit log closed) on exit."""
    audit = NodeAudit(state, "careplus")
    app = create_node_api(
        partner_id="careplus", data=lambda: data, matching_secret=SECRET, state=state, audit=audit,
        region="CN", version="0.1.0",
    )  # fmt: skip
    port = _free_port()
    config = node_server_config(
        app, tls=pki.node_tls("careplus"), port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.02)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        audit.close()


def test_session_ids_survive_a_node_restart(pki: Pki, client_tls, tmp_path: Path) -> None:
    data, state = _careplus(tmp_path / "careplus"), tmp_path / "careplus-state"
    state.mkdir(mode=0o700)
    freshmart = _service("freshmart", 0, MEMBERS, records=[], clock=Clock(), tmp=tmp_path)
    opening = {"size": MEMBERS, "purpose": Purpose.CROSS_BRAND_MATCHING, "reveal": Reveal.INITIATOR}
    with _node(pki, state, data) as base:
        client = _client(base, client_tls)
        freshmart.initiate(client, peer="careplus", mode=PsiMode.CARDINALITY)
        closed = client.open(mode=PsiMode.INTERSECTION, chunk_size=64, **opening).session_id
        assert client.http.delete(f"/psi/v1/sessions/{closed}").status_code == 204
        left_open = client.open(mode=PsiMode.CARDINALITY, chunk_size=64, **opening).session_id
        client.http.close()
    with sqlite3.connect(state / "psi_sessions.sqlite") as ledger:  # the initiator keeps no id
        [(completed,)] = ledger.execute("SELECT session_id FROM psi_sessions WHERE status = 'completed'")

    with _node(pki, state, data) as base:  # the node restarted on the same state folder
        client = _client(base, client_tls)
        for session_id, ended in ((completed, "completed"), (closed, "aborted"), (left_open, "aborted")):
            body = {
                "session_id": session_id, "initiator_partner": "freshmart", "mode": "cardinality",
                "purpose": str(Purpose.CROSS_BRAND_MATCHING), "initiator_size": MEMBERS, "chunk_size": 64,
            }  # fmt: skip
            again = client.http.post("/psi/v1/sessions", json=body)
            assert again.status_code == 409, again.text
            assert f"used before ({ended})" in again.json()["error"]
        client.http.close()

    with AuditLog.open(state / "audit.sqlite") as log:
        runs = [e.details for _, e in log.iter_events() if e.event_type == EventType.PSI_RUN]
    assert [(d["status"], d["mode"]) for d in runs] == [
        ("completed", "cardinality"),
        ("aborted", "intersection"),
        ("aborted", "cardinality"),  # recorded at the restart: the node stopped in the middle of it
    ]
    assert (state / "psi_sessions.sqlite").stat().st_mode & 0o777 == 0o600
