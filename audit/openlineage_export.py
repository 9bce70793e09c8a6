"""Export lineage events as OpenLineage RunEvents (spec 2-0-2) and forward them over HTTP.

Mapping (https://openlineage.io/docs/spec/object-model): a federated job is an OpenLineage *job*
(namespace ``loyalfed``, name ``<event family>.<job id>``) and its events share one *run* whose id
is a UUIDv5 of the job id, so START/RUNNING/COMPLETE line up in Marquez. Input datasets are the
partners' datasets (namespace ``loyalfed://<partner>``, named by fingerprint), outputs are the
artefacts by name with their SHA-256. Custom run facets carry ε/δ, the policy and consent snapshot
hashes, and the audit-log position so a consumer can ask the log for an inclusion proof.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import attr
from openlineage.client.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet
from openlineage.client.serde import Serde
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.http_common import DEFAULT_RETRY_CONFIG

from audit.errors import AuditError
from audit.lineage_event import EventType, LineageEvent

__all__ = [
    "AuditPositionRunFacet",
    "LoyalfedPolicyRunFacet",
    "PrivacyBudgetRunFacet",
    "forward_openlineage",
    "to_run_event",
    "write_openlineage",
]

PRODUCER = "https://github.com/loyalfed/loyalfed/tree/main/audit"
NAMESPACE = "loyalfed"
_RUN_NAMESPACE = uuid.UUID("6f1c3a52-7d4b-5e8a-9c0f-1b2d3e4f5a6b")
_FACET_SCHEMA = "https://loyalfed.example/spec/facets/1-0-0/{}.json#/$defs/{}"

_STATE = {
    EventType.JOB_STARTED: RunState.START,
    EventType.JOB_ROUND: RunState.RUNNING,
    EventType.JOB_FINISHED: RunState.COMPLETE,
    EventType.JOB_REFUSED: RunState.FAIL,
    EventType.BUDGET_CHARGED: RunState.RUNNING,
    EventType.MODEL_PUBLISHED: RunState.OTHER,
}


@attr.define
class PrivacyBudgetRunFacet(RunFacet):
    """ε (and δ) this step spent under differential privacy."""

    epsilon: float
    delta: float | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return _FACET_SCHEMA.format("PrivacyBudgetRunFacet", "PrivacyBudgetRunFacet")


@attr.define
class LoyalfedPolicyRunFacet(RunFacet):
    """The data-use policy, purpose and consent snapshot the step ran under."""

    purpose: str | None = attr.field(default=None)
    policyHash: str | None = attr.field(default=None)
    consentSnapshotHash: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return _FACET_SCHEMA.format("LoyalfedPolicyRunFacet", "LoyalfedPolicyRunFacet")


@attr.define
class AuditPositionRunFacet(RunFacet):
    """Where the event sits in the tamper-evident log (ask the audit service for a proof)."""

    sequence: int
    eventType: str
    actor: str
    role: str

    @staticmethod
    def _get_schema() -> str:
        return _FACET_SCHEMA.format("AuditPositionRunFacet", "AuditPositionRunFacet")


def _run_id(seq: int, event: LineageEvent) -> str:
    key = f"job:{event.job_id}" if event.job_id else f"entry:{seq}"
    return str(uuid.uuid5(_RUN_NAMESPACE, key))


def _job_name(event: LineageEvent) -> str:
    family = event.event_type.value.split(".")[0]
    return f"{family}.{event.job_id}" if event.job_id else event.event_type.value


def _run_facets(seq: int, event: LineageEvent) -> dict[str, RunFacet]:
    facets: dict[str, RunFacet] = {
        "loyalfed_audit": AuditPositionRunFacet(
            sequence=seq,
            eventType=event.event_type.value,
            actor=event.actor,
            role=event.role,
            producer=PRODUCER,
        )
    }
    if event.epsilon is not None:
        facets["loyalfed_privacy"] = PrivacyBudgetRunFacet(
            epsilon=event.epsilon, delta=event.delta, producer=PRODUCER
        )
    if event.policy_hash or event.consent_snapshot_hash or event.purpose:
        facets["loyalfed_policy"] = LoyalfedPolicyRunFacet(
            purpose=event.purpose,
            policyHash=event.policy_hash,
            consentSnapshotHash=event.consent_snapshot_hash,
            producer=PRODUCER,
        )
    return facets


def to_run_event(seq: int, event: LineageEvent) -> RunEvent:
    """One OpenLineage RunEvent for the log entry ``seq``."""
    inputs = [
        InputDataset(namespace=f"loyalfed://{ref.partner}", name=ref.name or ref.fingerprint)
        for ref in event.inputs
    ]
    outputs = [
        OutputDataset(namespace=f"{NAMESPACE}://artefacts", name=f"{ref.name}@{ref.sha256}")
        for ref in event.outputs
    ]
    return RunEvent(
        eventTime=event.time.isoformat().replace("+00:00", "Z"),
        eventType=_STATE.get(event.event_type, RunState.COMPLETE),
        run=Run(runId=_run_id(seq, event), facets=_run_facets(seq, event)),
        job=Job(namespace=NAMESPACE, name=_job_name(event)),
        inputs=inputs,
        outputs=outputs,
        producer=PRODUCER,
    )


def write_openlineage(entries: Iterable[tuple[int, LineageEvent]], out: Path) -> int:
    """Write one RunEvent per line (NDJSON, as the OpenLineage file transport does); returns the count."""
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        for line in _json_lines(entries):
            handle.write(line + "\n")
            count += 1
    return count


def _json_lines(entries: Iterable[tuple[int, LineageEvent]]) -> Iterator[str]:
    for seq, event in entries:
        yield Serde.to_json(to_run_event(seq, event))


def forward_openlineage(
    entries: Iterable[tuple[int, LineageEvent]],
    url: str,
    *,
    endpoint: str = "api/v1/lineage",
    retries: int = 3,
) -> int:
    """POST each RunEvent to an OpenLineage HTTP endpoint (Marquez: ``POST /api/v1/lineage``)."""
    retry = {**DEFAULT_RETRY_CONFIG, "total": retries, "read": retries, "connect": retries}
    config = HttpConfig(url=url, endpoint=endpoint, timeout=5.0, retry=retry)
    client = OpenLineageClient(transport=HttpTransport(config))
    count = 0
    try:
        for seq, event in entries:
            client.emit(to_run_event(seq, event))
            count += 1
    except Exception as err:  # transport boundary: requests/urllib3 errors become a typed error
        raise AuditError(
            f"forwarding OpenLineage event {count} to {url} failed ({type(err).__name__})"
        ) from err
    return count
