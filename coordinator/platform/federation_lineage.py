"""The federation's lineage graph as the coordinator's log tells it: datasets → jobs → models, with
the policies that governed the jobs and the officers' approvals of those policies beside them.

A filter (partner, job, time) picks the jobs and models to show; their context is always drawn, even
from events outside the filter: the policy each job ran under, every partner's decision on it, and
the datasets registered by the partners the policy names (the coordinator knows their schema
summaries only, fingerprinted in ``dataset.registered``). The reader's scope still bounds the whole
graph: a partner never sees context from events that do not name it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from audit import EventType, LineageEvent

__all__ = ["LINEAGE_NODE_LIMIT", "federation_lineage"]

# A graph a person can read: beyond this many nodes the newest are kept and the reply says so.
LINEAGE_NODE_LIMIT = 400

_DECISIONS = {EventType.POLICY_APPROVED: "approved", EventType.POLICY_REJECTED: "rejected"}


@dataclass
class _Graph:
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, node_id: str, kind: str, label: str) -> str:
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label})
        return node_id

    def link(self, source: str, target: str, relation: str) -> None:
        self.edges.add((source, target, relation))


@dataclass
class _Context:
    """What the whole log (in the reader's scope) says about policies and datasets."""

    partners_of_policy: dict[str, tuple[str, ...]] = field(default_factory=dict)
    decisions: dict[str, dict[str, str]] = field(default_factory=dict)  # policy hash -> partner -> decision
    datasets: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (partner, name) -> node

    def note(self, event: LineageEvent) -> None:
        if event.event_type is EventType.POLICY_DRAFTED and event.policy_hash:
            self.partners_of_policy[event.policy_hash] = event.partners
        elif event.event_type in _DECISIONS and event.policy_hash and event.partner:
            self.decisions.setdefault(event.policy_hash, {})[event.partner] = _DECISIONS[event.event_type]
        elif event.event_type is EventType.DATASET_REGISTERED:
            for ref in event.inputs:  # a re-registered dataset: its newest summary stands
                node = _dataset_node(ref.partner, ref.name, ref.fingerprint)
                self.datasets[(ref.partner, ref.name or "")] = node


def _dataset_node(partner: str, name: str | None, fingerprint: str) -> tuple[str, str]:
    return f"dataset:{partner}:{fingerprint}", f"{partner} {name or fingerprint[-8:]}"


def _link(event: LineageEvent, graph: _Graph) -> None:
    job = graph.add(f"job:{event.job_id}", "job", event.job_id) if event.job_id else None
    model = graph.add(f"model:{event.model_id}", "model", event.model_id) if event.model_id else None
    policy = None
    if event.policy_hash:
        policy = graph.add(f"policy:{event.policy_hash}", "policy", event.policy_hash[:12])
    for ref in event.inputs:
        node_id, label = _dataset_node(ref.partner, ref.name, ref.fingerprint)
        dataset = graph.add(node_id, "dataset", label)
        if job:
            graph.link(dataset, job, "input")
    if job and model:
        graph.link(job, model, "produced")
    governed = job or model
    if policy and governed:
        graph.link(policy, governed, "governs")
    if policy and event.partner and event.event_type in _DECISIONS:
        approval = graph.add(f"approval:{event.partner}:{event.policy_hash}", "approval", event.partner)
        graph.link(approval, policy, _DECISIONS[event.event_type])


def _add_context(graph: _Graph, context: _Context) -> None:
    """Beside each policy shown: its decisions; into each job: the datasets of the partners it names."""
    governs = [(s, t) for s, t, r in graph.edges if r == "governs" and t.startswith("job:")]
    for node_id in [n for n in graph.nodes if n.startswith("policy:")]:
        policy_hash = node_id.removeprefix("policy:")
        for partner, decision in sorted(context.decisions.get(policy_hash, {}).items()):
            approval = graph.add(f"approval:{partner}:{policy_hash}", "approval", partner)
            graph.link(approval, node_id, decision)
    for policy, job in governs:
        partners = context.partners_of_policy.get(policy.removeprefix("policy:"), ())
        for (partner, _name), (dataset, label) in sorted(context.datasets.items()):
            if partner in partners:
                graph.link(graph.add(dataset, "dataset", label), job, "input")


Predicate = Callable[[LineageEvent], bool]


def federation_lineage(
    events: Iterable[LineageEvent], *, in_scope: Predicate, admitted: Predicate
) -> dict[str, Any]:
    """The graph of the ``admitted`` events with their context from every event ``in_scope``.

    ``in_scope`` and ``admitted`` are predicates on an event (the reader's scope, and the scope
    with the reader's filter).
    """
    graph, context = _Graph(), _Context()
    for event in events:
        if not in_scope(event):
            continue
        context.note(event)
        if admitted(event):
            _link(event, graph)
    _add_context(graph, context)
    kept = list(graph.nodes)[-LINEAGE_NODE_LIMIT:]
    keep = set(kept)
    return {
        "nodes": [graph.nodes[n] for n in kept],
        "edges": [
            {"source": s, "target": t, "relation": r}
            for s, t, r in sorted(graph.edges)
            if s in keep and t in keep
        ],
        "truncated": len(graph.nodes) > LINEAGE_NODE_LIMIT,
    }
