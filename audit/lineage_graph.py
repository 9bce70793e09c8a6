"""The lineage graph of a model: which datasets, partners, approvals, consent snapshots and ε.

Built from the log alone: start at the ``model.published`` event(s) of the model, follow their
job id to every event of that job, and from those events' policy and consent-snapshot hashes to
the approvals and consent imports that authorised them. Each node keeps the log sequence numbers
it came from, so an auditor can ask for their inclusion proofs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from audit.errors import AuditError
from audit.lineage_event import EventType, LineageEvent

__all__ = ["LineageGraph", "NodeKind", "build_lineage_graph"]


class NodeKind(StrEnum):
    MODEL = "model"
    JOB = "job"
    DATASET = "dataset"
    PARTNER = "partner"
    POLICY = "policy"
    APPROVAL = "approval"
    CONSENT_SNAPSHOT = "consent_snapshot"
    BUDGET = "budget"


@dataclass
class LineageGraph:
    """Nodes (id -> kind, label, attributes) and labelled edges, plus the entries used."""

    model_id: str
    nodes: dict[str, dict[str, object]] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)

    def add_node(self, node_id: str, kind: NodeKind, label: str, **attributes: object) -> str:
        node = self.nodes.setdefault(node_id, {"kind": kind.value, "label": label})
        node.update({k: v for k, v in attributes.items() if v is not None})
        return node_id

    def add_edge(self, source: str, target: str, relation: str) -> None:
        if (source, target, relation) not in self.edges:
            self.edges.append((source, target, relation))

    @property
    def epsilon_by_partner(self) -> dict[str, float]:
        return {
            str(n["label"]): float(n["epsilon"])  # type: ignore[arg-type]
            for n in self.nodes.values()
            if n["kind"] == NodeKind.BUDGET.value
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "nodes": [{"id": k, **v} for k, v in self.nodes.items()],
            "edges": [{"source": s, "target": t, "relation": r} for s, t, r in self.edges],
            "entries": self.entries,
        }


def build_lineage_graph(entries: Iterable[tuple[int, LineageEvent]], model_id: str) -> LineageGraph:
    """Lineage of ``model_id`` from all log ``entries`` (seq, event), in log order."""
    entries = list(entries)
    published = [
        (s, e) for s, e in entries if e.event_type == EventType.MODEL_PUBLISHED and e.model_id == model_id
    ]
    if not published:
        raise AuditError(f"no model.published event for model {model_id!r} in the log")
    graph = LineageGraph(model_id=model_id)
    model = graph.add_node(f"model:{model_id}", NodeKind.MODEL, model_id)
    jobs = {e.job_id for _, e in published if e.job_id}
    related = [(s, e) for s, e in entries if (e.job_id in jobs) or (e.model_id == model_id)]
    policies = {e.policy_hash for _, e in related if e.policy_hash}
    snapshots = {e.consent_snapshot_hash for _, e in related if e.consent_snapshot_hash}
    for seq, event in related:
        _add_job_event(graph, model, seq, event)
    for seq, event in entries:
        if event.policy_hash in policies and event.event_type.value.startswith("policy."):
            _add_policy_event(graph, seq, event)
        elif event.consent_snapshot_hash in snapshots and event.event_type.value.startswith("consent."):
            _add_consent_event(graph, seq, event)
    graph.entries.sort()
    return graph


def _add_job_event(graph: LineageGraph, model: str, seq: int, event: LineageEvent) -> None:
    graph.entries.append(seq)
    job = graph.add_node(f"job:{event.job_id}", NodeKind.JOB, str(event.job_id), purpose=event.purpose)
    graph.add_edge(job, model, "produced")
    for ref in event.inputs:
        partner = graph.add_node(f"partner:{ref.partner}", NodeKind.PARTNER, ref.partner)
        dataset = graph.add_node(
            f"dataset:{ref.partner}:{ref.fingerprint}",
            NodeKind.DATASET,
            f"{ref.partner}/{ref.name or 'data'} {ref.fingerprint[:6]}",
            fingerprint=ref.fingerprint,
        )
        graph.add_edge(partner, dataset, "owns")
        graph.add_edge(dataset, job, "input to")
    if event.policy_hash:
        graph.add_edge(_policy_node(graph, event.policy_hash), job, "authorises")
    if event.consent_snapshot_hash:
        graph.add_edge(_snapshot_node(graph, event.consent_snapshot_hash), job, "filters")
    if event.event_type == EventType.BUDGET_CHARGED and event.epsilon is not None:
        who = event.partner or "federation"
        node_id = f"budget:{who}"
        spent = float(graph.nodes.get(node_id, {}).get("epsilon", 0.0)) + event.epsilon  # type: ignore[arg-type]
        graph.add_node(node_id, NodeKind.BUDGET, who, epsilon=spent)
        graph.add_edge(node_id, job, "ε charged")
    if event.event_type == EventType.MODEL_PUBLISHED:
        graph.nodes[model].update({"outputs": [o.sha256 for o in event.outputs], "published_by": event.actor})


def _policy_node(graph: LineageGraph, policy_hash: str) -> str:
    return graph.add_node(
        f"policy:{policy_hash}", NodeKind.POLICY, f"policy {policy_hash[:8]}", policy_hash=policy_hash
    )


def _snapshot_node(graph: LineageGraph, snapshot: str) -> str:
    return graph.add_node(
        f"consent:{snapshot}",
        NodeKind.CONSENT_SNAPSHOT,
        f"consents {snapshot[:8]}",
        consent_snapshot_hash=snapshot,
    )


def _add_policy_event(graph: LineageGraph, seq: int, event: LineageEvent) -> None:
    graph.entries.append(seq)
    policy = _policy_node(graph, str(event.policy_hash))
    if event.event_type == EventType.POLICY_DRAFTED:
        policy_id = event.details.get("policy_id")
        graph.nodes[policy].update({"drafted_by": event.actor, "purpose": event.purpose})
        if isinstance(policy_id, str):
            graph.nodes[policy].update({"policy_id": policy_id, "label": f"policy {policy_id}"})
        if event.epsilon is not None:
            graph.nodes[policy]["epsilon_cap"] = event.epsilon
        return
    who = event.partner or event.actor
    decision = "approved" if event.event_type == EventType.POLICY_APPROVED else "rejected"
    approval = graph.add_node(
        f"approval:{policy}:{who}", NodeKind.APPROVAL, f"{who} {decision}", actor=event.actor
    )
    graph.add_edge(approval, policy, decision)
    if event.partner:
        graph.add_edge(
            graph.add_node(f"partner:{event.partner}", NodeKind.PARTNER, event.partner), approval, "decided"
        )


def _add_consent_event(graph: LineageGraph, seq: int, event: LineageEvent) -> None:
    graph.entries.append(seq)
    snapshot = _snapshot_node(graph, str(event.consent_snapshot_hash))
    counts = graph.nodes[snapshot].setdefault("counts", {})
    assert isinstance(counts, dict)
    counts.update(event.details)
    if event.partner:
        graph.add_edge(
            graph.add_node(f"partner:{event.partner}", NodeKind.PARTNER, event.partner), snapshot, "consents"
        )
