"""OpenLineage export: parsed back with the openlineage-python classes; forwarded over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from audit.errors import AuditError
from audit.openlineage_export import (
    AuditPositionRunFacet,
    LoyalfedPolicyRunFacet,
    PrivacyBudgetRunFacet,
    forward_openlineage,
    write_openlineage,
)

_FACETS = {
    "loyalfed_audit": AuditPositionRunFacet,
    "loyalfed_privacy": PrivacyBudgetRunFacet,
    "loyalfed_policy": LoyalfedPolicyRunFacet,
}


def parse_run_event(data: dict) -> RunEvent:
    """Rebuild a RunEvent with the client's own attrs classes (they validate run ids, states…)."""
    facets = {
        name: _FACETS[name](
            **{k: v for k, v in facet.items() if not k.startswith("_")}, producer=facet["_producer"]
        )
        for name, facet in data["run"]["facets"].items()
        if name in _FACETS  # the client may add its own facets (e.g. tags) when it emits
    }
    return RunEvent(
        eventTime=data["eventTime"],
        eventType=RunState(data["eventType"]),
        run=Run(runId=data["run"]["runId"], facets=facets),
        job=Job(namespace=data["job"]["namespace"], name=data["job"]["name"]),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in data["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in data["outputs"]],
        producer=data["producer"],
    )


def test_export_parses_with_the_openlineage_client(tmp_path: Path, flow: Callable) -> None:
    events = list(enumerate(flow()))
    out = tmp_path / "lineage.ndjson"
    assert write_openlineage(events, out) == 13
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    parsed = [parse_run_event(line) for line in lines]
    assert [Serde.to_dict(p) for p in parsed] == lines  # lossless round trip through the client classes
    started = next(p for p in parsed if p.eventType == RunState.START)
    finished = next(p for p in parsed if p.eventType == RunState.COMPLETE and p.job.name == "job.job-1")
    assert started.run.runId == finished.run.runId  # one OpenLineage run per federated job
    assert [d.namespace for d in started.inputs] == ["loyalfed://freshmart-north", "loyalfed://careplus"]
    charge = next(p for p in parsed if "loyalfed_privacy" in p.run.facets)
    assert charge.run.facets["loyalfed_privacy"].epsilon == pytest.approx(0.75)
    assert charge.run.facets["loyalfed_policy"].policyHash == "a1" * 32
    published = next(p for p in parsed if p.outputs)
    assert published.outputs[0].name == f"weights.pt@{'ee' * 32}"


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_forwarding_to_an_http_endpoint(flow: Callable) -> None:
    _Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert forward_openlineage(list(enumerate(flow()))[:4], url) == 4
    finally:
        server.shutdown()
    assert [path for path, _ in _Collector.received] == ["/api/v1/lineage"] * 4
    assert all(parse_run_event(body) for _, body in _Collector.received)


def test_forwarding_failure_is_a_typed_error(flow: Callable) -> None:
    with pytest.raises(AuditError, match="forwarding OpenLineage event 0"):
        forward_openlineage(list(enumerate(flow()))[:1], "http://127.0.0.1:9", retries=0)
