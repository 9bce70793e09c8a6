"""Node apps on a real SuperLink: only approved apps run, and exact secure sums survive a dropout.

A real TLS SuperLink and three SuperNodes started by the node's supervisor (authentication keys,
the approving ClientApp launcher). Two small Flower Apps differ by one line; every node approves
only the first (by its FAB sha256).

- The second app's run gets, from every node, an error reply naming its hash and the rule, and its
  ClientApp code was never imported (its import-time marker file does not exist).
- The approved app runs a secure integer sum (``coordinator.secure_sum``, SecAgg+ with the nodes'
  ``secure_aggregation_mod`` in the SuperNodes' ClientApp processes): one node crashes after the
  key and share exchange, and the server gets the exact sum of the other two's count vectors; no
  masked vector it received is a node's quantised counts in clear.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from tests.deploy.loopback_superlink import LoopbackSuperLink

pytestmark = pytest.mark.slow(seconds=90)

NODES = {"store-a": 0, "store-b": 1, "store-c": 2}  # partner -> the counts it holds
DROPS, MAX_VALUE = "store-c", 1000

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
import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from participant_node.secure_aggregation_mod import integer_vector_reply, secure_aggregation_mod

MARKERS = Path({markers!r})
MARKERS.mkdir(parents=True, exist_ok=True)
(MARKERS / "{name}-imported").touch()
NODES, DROPS = {nodes!r}, {drops!r}
app = ClientApp(mods=[secure_aggregation_mod])


def counts(partner):
    return np.array([NODES[partner] * 100 + i * 7 for i in range(12)], dtype=np.int64)


@app.query()
def probe(message: Message, context: Context) -> Message:
    return Message(RecordDict({{"probe": ConfigRecord({{"app": "{name}"}})}}), reply_to=message)


@app.train()
def count(message: Message, context: Context) -> Message:
    partner = str(context.node_config["partner-id"])
    if partner == DROPS:  # reached in the masked-vector stage only: after setup and share keys
        raise RuntimeError("node crashed while counting")
    return integer_vector_reply(message, [counts(partner)], {{"partner": partner}})
"""

_SERVER = """import json, time
from pathlib import Path
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import Key
from flwr.serverapp import Grid, ServerApp
from coordinator.secure_sum import secure_integer_sum

app = ServerApp()


class Recording:  # the server's grid, keeping every masked vector the server receives
    def __init__(self, grid, seen):
        self._grid, self._seen = grid, seen

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, timeout=None):
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            for record in [] if reply.has_error() else reply.content.config_records.values():
                if Key.MASKED_PARAMETERS in record:
                    self._seen.append([bytes_to_ndarray(b).tolist() for b in record[Key.MASKED_PARAMETERS]])
        return replies


@app.main()
def main(grid: Grid, context: Context) -> None:
    deadline = time.monotonic() + 60
    while len(list(grid.get_node_ids())) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    nodes = list(grid.get_node_ids())
    asks = [
        Message(RecordDict({"probe": ConfigRecord({"ask": 1})}), dst_node_id=n, message_type="query")
        for n in nodes
    ]
    answers = [
        {"error": r.error.reason} if r.has_error() else {"app": str(r.content["probe"]["app"])}
        for r in grid.send_and_receive(asks, timeout=60)
    ]
    result = {"answers": answers}
    if not any("error" in a for a in answers):
        seen = []
        total = secure_integer_sum(
            Recording(grid, seen),
            context,
            nodes,
            config={"what": "score-histogram"},
            max_value=1000,
            timeout=60.0,
        )
        result.update(
            totals=[t.tolist() for t in total.totals], nodes=total.nodes,
            partners=sorted(str(m["partner"]) for m in total.metrics), masked=seen,
        )
    Path(str(context.run_config["out"])).write_text(json.dumps(result))
"""


def _probe_app(root: Path, name: str, markers: Path) -> Path:
    folder = root / f"app-{name}"
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(_PYPROJECT.format(name=name), encoding="utf-8")
    client = _CLIENT.format(markers=str(markers), name=name, nodes=NODES, drops=DROPS)
    (folder / f"probe_client_{name}.py").write_text(client, encoding="utf-8")
    (folder / "probe_server.py").write_text(_SERVER, encoding="utf-8")
    return folder


def _counts(partner: str) -> list[int]:
    return [NODES[partner] * 100 + i * 7 for i in range(12)]


def test_unapproved_apps_are_refused_and_secure_sums_survive_a_dropout(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    approved_app = _probe_app(tmp_path, "approved", markers)
    other_app = _probe_app(tmp_path, "other", markers)
    approved = hashlib.sha256(build_fab_from_disk(approved_app)).hexdigest()
    other = hashlib.sha256(build_fab_from_disk(other_app)).hexdigest()
    link = LoopbackSuperLink(tmp_path / "deploy")
    outcomes = {}
    try:
        for partner in NODES:
            link.add_supernode(
                partner, node_config={"partner-id": partner}, approved_apps=frozenset({approved})
            )
        for name, app in (("other", other_app), ("approved", approved_app)):
            out = tmp_path / f"{name}.json"
            link.run(app, f"out='{out}'")
            deadline = time.monotonic() + 240
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.3)
            assert out.exists(), link.logs()
            outcomes[name] = json.loads(out.read_text())
    finally:
        link.close()
    # The unapproved app: refused by every node, in its reply, and its code never imported.
    refusals = outcomes["other"]["answers"]
    assert len(refusals) == len(NODES)
    for refusal in refusals:
        assert "UnapprovedAppError" in refusal["error"] and other in refusal["error"]
        assert "not approved at this node" in refusal["error"]
    assert not (markers / "other-imported").exists()
    # The approved app ran at every node, and its secure sum is exact over the two survivors.
    result = outcomes["approved"]
    assert result["answers"] == [{"app": "approved"}] * len(NODES)
    assert (markers / "approved-imported").exists()
    assert result["nodes"] == 2 and result["partners"] == ["store-a", "store-b"]
    assert result["totals"] == [[a + b for a, b in zip(_counts("store-a"), _counts("store-b"), strict=True)]]
    # The survivors' two masked vectors reached the server, neither a node's quantised counts (x + R).
    assert len(result["masked"]) == 2
    quantised = [[c + MAX_VALUE for c in _counts(p)] for p in NODES]
    assert not any(masked[1] == q for masked in result["masked"] for q in quantised)
