"""What the audit log shows through the coordinator's API: the signed head, consistency proofs,
events, a federation-wide lineage graph, OpenLineage and the anomaly report.

Reads are scoped: ``scope`` None (auditors, the federation administrator) reads every event; a
partner's scope reads only the events that name that partner. The auditor's real checks (the head's
signature against a pinned key, consistency from a saved head) run on the auditor's side — the
console in the browser, ``loyalfed audit verify`` on the command line; this module only serves the
material.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from audit import AuditLog, EventType, LineageEvent
from audit.anomaly_report import find_anomalies
from audit.audit_log import LogEntry
from audit.openlineage_export import to_run_event
from audit.tree_head import SignedTreeHead
from coordinator.platform.federation_lineage import LINEAGE_NODE_LIMIT
from coordinator.platform.federation_lineage import federation_lineage as lineage_graph

__all__ = [
    "LINEAGE_NODE_LIMIT",
    "EventFilter",
    "anomalies",
    "consistency",
    "erasures",
    "events_page",
    "federation_lineage",
    "latest_head",
    "openlineage_events",
]


@dataclass(frozen=True)
class EventFilter:
    """Partner, job and time window, plus the reader's scope (None reads everything)."""

    scope: str | None
    partner: str | None = None
    job: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_type: EventType | None = None

    def admits(self, event: LineageEvent) -> bool:
        if self.scope is not None or self.partner is not None:  # partner_names costs: only when asked
            names = event.partner_names()
            if (self.scope is not None and self.scope not in names) or (
                self.partner is not None and self.partner not in names
            ):
                return False
        return (
            (self.job is None or self.job in (event.job_id, event.model_id))
            and (self.since is None or event.time >= self.since)
            and (self.until is None or event.time <= self.until)
            and (self.event_type is None or event.event_type is self.event_type)
        )


def latest_head(log: AuditLog) -> SignedTreeHead | None:
    """The newest signed tree head, or None for an empty log."""
    return log.tree_head() if log.size > 0 else None


def consistency(log: AuditLog, first: int, second: int) -> list[str]:
    """RFC 9162 §2.1.4 consistency proof between two sizes of the log, as hex strings."""
    return [node.hex() for node in log.consistency_proof(first, second)]


class EventSource(Protocol):
    """The log's entries in order: an ``AuditLog``, or its parsed entries (``ParsedEvents``)."""

    def iter_events(self) -> Iterable[LogEntry]: ...


def _filtered(log: EventSource, which: EventFilter) -> Iterator[tuple[int, LineageEvent]]:
    for seq, event in log.iter_events():
        if which.admits(event):
            yield seq, event


def _public(seq: int, event: LineageEvent) -> dict[str, Any]:
    return {"seq": seq, **event.model_dump(mode="json", exclude_none=True)}


def events_page(log: EventSource, which: EventFilter, *, offset: int, limit: int) -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = []
    for index, (seq, event) in enumerate(_filtered(log, which)):
        if index >= offset + limit:
            break
        if index >= offset:
            page.append(_public(seq, event))
    return page


def erasures(log: EventSource, which: EventFilter) -> list[dict[str, Any]]:
    """Every erasure event in scope, with its deadline and completion where the event carries them."""
    rows = []
    for seq, event in _filtered(log, which):
        if event.event_type is EventType.CONSENT_ERASED:
            details = event.details
            rows.append(
                {
                    **_public(seq, event),
                    "event_time": event.time.isoformat(),
                    "deadline": details.get("deadline"),
                    "completed_at": details.get("completed_at"),
                }
            )
    return rows


def federation_lineage(log: EventSource, which: EventFilter) -> dict[str, Any]:
    """Datasets → jobs → models, policies and approvals beside them, for the events in the filter."""
    scope = EventFilter(scope=which.scope)
    return lineage_graph(
        (event for _, event in log.iter_events()), in_scope=scope.admits, admitted=which.admits
    )


def openlineage_events(log: EventSource, which: EventFilter) -> list[dict[str, Any]]:
    """OpenLineage run events (the client's own serialisation) for the events in scope."""
    from openlineage.client.serde import Serde

    return [dict(Serde.to_dict(to_run_event(seq, event))) for seq, event in _filtered(log, which)]


def anomalies(log: EventSource, which: EventFilter) -> list[dict[str, object]]:
    return [anomaly.as_dict() for anomaly in find_anomalies(list(_filtered(log, which)))]
