"""Only approved code runs at a node: a SuperNode refuses a Flower App whose FAB hash it did not approve.

End to end on a real TLS SuperLink and a real SuperNode started by the node's supervisor (its
approving ClientApp launcher): two small Flower Apps differ by one line; the node approves the first.
The second app's run gets an error reply that names its hash and the rule, and its ClientApp code was
never imported (its import-time marker file does not exist); the approved app runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from loyalfed.flower_app import flower_app_dir, flower_app_hash
from participant_node.approved_apps import (
    APPROVED_APPS_ENV,
    UnapprovedAppError,
    approved_from_environment,
    check_app,
    launcher_environment,
)
from tests.deploy.loopback_superlink import LoopbackSuperLink

_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "probe-{name}"
version = "1.0.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "loyalfed-tests"

[tool.flwr.app.components]
serverapp = "probe_server:app"
clientapp = "probe_client_{name}:app"

[tool.flwr.app.config]
out = ""
"""

# Writes a marker when imported: the proof that the node loaded (or never loaded) the app's code.
_CLIENT = """from pathlib import Path
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

MARKERS = Path({markers!r})
MARKERS.mkdir(parents=True, exist_ok=True)
(MARKERS / "{name}-imported").touch()
app = ClientApp()


@app.query()
def probe(message: Message, context: Context) -> Message:
    return Message(RecordDict({{"probe": ConfigRecord({{"app": "{name}"}})}}), reply_to=message)
"""

_SERVER = """import json, time
from pathlib import Path
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    deadline = time.monotonic() + 30
    while not list(grid.get_node_ids()) and time.monotonic() < deadline:
        time.sleep(0.2)
    asks = [
        Message(RecordDict({"probe": ConfigRecord({"ask": 1})}), dst_node_id=node, message_type="query")
        for node in grid.get_node_ids()
    ]
    replies = list(grid.send_and_receive(asks, timeout=30))
    answers = [
        {"error": r.error.reason} if r.has_error() else {"app": str(r.content["probe"]["app"])}
        for r in replies
    ]
    Path(str(context.run_config["out"])).write_text(json.dumps(answers))
"""


def _probe_app(root: Path, name: str, markers: Path) -> Path:
    folder = root / f"app-{name}"
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(_PYPROJECT.format(name=name), encoding="utf-8")
    (folder / f"probe_client_{name}.py").write_text(
        _CLIENT.format(markers=str(markers), name=name), encoding="utf-8"
    )
    (folder / "probe_server.py").write_text(_SERVER, encoding="utf-8")
    return folder


def _fab_sha256(folder: Path) -> str:
    return hashlib.sha256(build_fab_from_disk(folder)).hexdigest()


def test_the_check_names_the_hash_and_the_rule() -> None:
    approved = frozenset({hashlib.sha256(b"approved fab").hexdigest()})
    assert check_app(b"approved fab", approved) == hashlib.sha256(b"approved fab").hexdigest()
    with pytest.raises(UnapprovedAppError, match=hashlib.sha256(b"other fab").hexdigest()) as refused:
        check_app(b"other fab", approved)
    assert "not approved at this node" in str(refused.value)
    with pytest.raises(UnapprovedAppError):
        check_app(b"approved fab", frozenset())  # nothing approved: every app is refused


def test_the_launcher_environment_puts_the_launcher_first(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    env = launcher_environment({"PATH": "/usr/bin"}, launcher_dir=tmp_path, approved=[digest.upper()])
    assert env["PATH"].split(":")[0] == str(tmp_path)
    assert approved_from_environment(env) == {digest}
    with pytest.raises(ValueError, match="64 hex digits"):
        approved_from_environment({APPROVED_APPS_ENV: "not-a-hash"})


def test_the_shipped_app_hash_is_the_hash_of_its_fab() -> None:
    # The node approves this by default; flwr run builds the same bytes (fixed entry dates).
    assert flower_app_hash() == _fab_sha256(flower_app_dir())


@pytest.mark.slow
def test_a_supernode_refuses_an_app_it_did_not_approve_and_runs_the_one_it_did(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    approved_app = _probe_app(tmp_path, "approved", markers)
    other_app = _probe_app(tmp_path, "other", markers)
    approved = _fab_sha256(approved_app)
    other = _fab_sha256(other_app)
    assert approved != other
    link = LoopbackSuperLink(tmp_path / "deploy")
    try:
        link.add_supernode(
            "freshmart-north",
            node_config={"partner-id": "freshmart-north"},
            approved_apps=frozenset({approved}),
        )
        outcomes = {}
        for name, app in (("other", other_app), ("approved", approved_app)):
            out = tmp_path / f"{name}.json"
            link.run(app, f"out='{out}'")
            deadline = time.monotonic() + 60
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.3)
            assert out.exists(), link.logs()
            outcomes[name] = json.loads(out.read_text())
    finally:
        link.close()
    # The unapproved app: refused by the node, in its reply, and its code never imported.
    [refusal] = outcomes["other"]
    assert "UnapprovedAppError" in refusal["error"] and other in refusal["error"]
    assert "not approved at this node" in refusal["error"]
    assert not (markers / "other-imported").exists()
    # The approved one ran at the same node.
    assert outcomes["approved"] == [{"app": "approved"}]
    assert (markers / "approved-imported").exists()
