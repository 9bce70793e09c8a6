"""Demo stages around the tamper-evident audit log.

``OpenAuditLog`` runs right after the federation is built: it opens the log in the demo folder and
attaches a sink, so every lineage event of every stage (including the ones recorded before it,
replayed by the pipeline) is validated and appended durably. ``VerifyAuditLog`` runs last: it
verifies the whole log as an auditor would, proves one entry's inclusion and the consistency of
the log since this run began, exports OpenLineage, and draws the lineage graph of each model.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the demo writes PNGs, it never opens a window

import matplotlib.pyplot as plt
import networkx as nx

from audit.anomaly_report import find_anomalies
from audit.audit_log import AuditLog
from audit.lineage_event import EventRejectedError, EventType, LineageEvent
from audit.lineage_graph import LineageGraph, NodeKind, build_lineage_graph
from audit.log_verification import verify_log
from audit.merkle_tree import verify_consistency, verify_inclusion
from audit.openlineage_export import write_openlineage
from audit.tree_head import verify_tree_head
from loyalfed.demo.pipeline import DemoContext

LOG_FILE = "audit.sqlite"
LINEAGE_FIGURE = "audit_lineage.png"
OPENLINEAGE_FILE = "openlineage.ndjson"
_LOG, _START, _REFUSED = "audit.log", "audit.start_size", "audit.refused"

# Left-to-right layers of the lineage picture: who owns what, what authorised it, what it made.
_LAYER = {
    NodeKind.PARTNER: 0,
    NodeKind.DATASET: 1,
    NodeKind.CONSENT_SNAPSHOT: 1,
    NodeKind.APPROVAL: 1,
    NodeKind.POLICY: 2,
    NodeKind.BUDGET: 2,
    NodeKind.JOB: 3,
    NodeKind.MODEL: 4,
}
_COLOUR = {
    NodeKind.PARTNER: "#4c72b0",
    NodeKind.DATASET: "#55a868",
    NodeKind.CONSENT_SNAPSHOT: "#8172b2",
    NodeKind.APPROVAL: "#ccb974",
    NodeKind.POLICY: "#c44e52",
    NodeKind.BUDGET: "#dd8452",
    NodeKind.JOB: "#64b5cd",
    NodeKind.MODEL: "#222222",
}


class OpenAuditLog:
    """Open ``out_dir/audit.sqlite`` and send every lineage event of the demo to it."""

    name = "audit_log.open"

    def run(self, ctx: DemoContext) -> None:
        path = ctx.out_dir / LOG_FILE
        log = AuditLog.open(path)  # append-only: a re-run extends the previous run's log
        ctx.artefacts[_LOG], ctx.artefacts[_START], ctx.artefacts[_REFUSED] = log, log.size, []
        ctx.attach_lineage_sink(lambda record: _append(ctx, log, record))
        ctx.add_summary("audit", "log", f"{path.name} (key {path.with_suffix('.key').name})")


def _append(ctx: DemoContext, log: AuditLog, record: dict[str, Any]) -> None:
    try:
        event = LineageEvent.from_record(record, now=datetime.now(UTC), actor="loyalfed-demo")
    except EventRejectedError as err:
        # Never silently dropped: counted, shown now, and listed in the verification table.
        ctx.artefacts[_REFUSED].append(str(err))
        ctx.console.print(f"[bold red]audit log refused an event:[/bold red] {err}")
        return
    log.append(event)


class VerifyAuditLog:
    """Verify the whole log, prove inclusion and consistency, export OpenLineage, draw lineage."""

    name = "audit_log.verify"

    def run(self, ctx: DemoContext) -> None:
        log: AuditLog = ctx.artefacts[_LOG]
        report = verify_log(log.path, public_key=log.public_key)  # the writer's own key, held in memory
        # What an auditor pins: the log's public key, published by its writer (never the key file).
        (ctx.out_dir / "audit_public_key.txt").write_text(log.public_key_hex + "\n", encoding="ascii")
        rows = [
            ["whole-log verification", "passed" if report.ok else f"FAILED: {report.first_problem}"],
            ["entries", f"{report.tree_size:,} ({report.tree_size - ctx.artefacts[_START]:,} from this run)"],
            ["signed tree heads checked", f"{report.tree_heads:,} against the {report.trust_anchor}"],
            ["root hash", report.root_hash],
            ["log public key (pin it: audit verify --public-key)", log.public_key_hex],
            *_proof_rows(log, ctx.artefacts[_START], random.Random(ctx.seed)),
            ["events refused (identifier-shaped or invalid)", str(len(ctx.artefacts[_REFUSED]))],
        ]
        entries = list(log.iter_events())
        anomalies = find_anomalies(entries)
        rows.append(["anomaly signals (loyalfed audit report)", str(len(anomalies))])
        exported = write_openlineage(entries, ctx.out_dir / OPENLINEAGE_FILE)
        rows.append(["OpenLineage RunEvents exported", f"{exported:,} → {OPENLINEAGE_FILE}"])
        ctx.report.add_heading("Audit log")
        ctx.report.add_text(
            "Every stage appended its lineage events (counts and hashes, never member identifiers) to an "
            "RFC 9162 Merkle log with Ed25519-signed tree heads. `loyalfed audit verify --db "
            f"{LOG_FILE}` repeats this check; `loyalfed audit lineage --model ID --db {LOG_FILE}` "
            "explains a model."
        )
        ctx.report.add_table("Audit log verification", ["check", "result"], rows)
        self._lineage(ctx, entries)
        ctx.add_summary(
            "audit", "log verification", f"{'ok' if report.ok else 'FAILED'} ({report.tree_size} entries)"
        )
        log.close()

    def _lineage(self, ctx: DemoContext, entries: list[tuple[int, LineageEvent]]) -> None:
        models = list(
            dict.fromkeys(
                e.model_id for _, e in entries if e.event_type == EventType.MODEL_PUBLISHED and e.model_id
            )
        )
        if not models:
            ctx.report.add_text("No model was published in this run, so there is no model lineage to draw.")
            return
        graphs = [build_lineage_graph(entries, model_id) for model_id in models[-3:]]
        draw_lineage(graphs, ctx.out_dir / LINEAGE_FIGURE)
        ctx.report.add_figure("Lineage of the published models, from the audit log", LINEAGE_FIGURE)
        ctx.report.add_table(
            "ε charged per partner, from the audit log",
            ["model", "partner", "ε"],
            [
                [g.model_id, p, f"{eps:.3f}"]
                for g in graphs
                for p, eps in sorted(g.epsilon_by_partner.items())
            ],
        )


def _proof_rows(log: AuditLog, start_size: int, rng: random.Random) -> list[list[str]]:
    """Check, as a node would, one entry's inclusion and the log's consistency since the run began."""
    head = log.tree_head()
    if head.tree_size == 0:
        return []
    seq = rng.randrange(head.tree_size)
    included = verify_inclusion(log.entry(seq)[1], seq, head.tree_size, log.inclusion_proof(seq), head.root)
    rows = [[f"inclusion proof of entry {seq}", "verified" if included else "FAILED"]]
    if start_size:
        old = log.tree_head(start_size)
        consistent = verify_consistency(
            start_size, head.tree_size, log.consistency_proof(start_size), old.root, head.root
        ) and verify_tree_head(old, log.public_key)
        rows.append([f"consistency {start_size} → {head.tree_size}", "verified" if consistent else "FAILED"])
    return rows


def draw_lineage(graphs: list[LineageGraph], out: Any) -> None:
    """One panel per model: partners → datasets/approvals/consents → policy/ε → job → model."""
    fig, axes = plt.subplots(len(graphs), 1, figsize=(11, 4.2 * len(graphs)), squeeze=False)
    for ax, graph in zip(axes[:, 0], graphs, strict=True):
        g = nx.DiGraph()
        for node_id, node in graph.nodes.items():
            g.add_node(node_id, layer=_LAYER[NodeKind(str(node["kind"]))])
        g.add_edges_from((s, t) for s, t, _ in graph.edges)
        pos = nx.multipartite_layout(g, subset_key="layer")
        kinds = [NodeKind(str(graph.nodes[n]["kind"])) for n in g.nodes]
        nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, edge_color="#999999", arrowsize=10)
        nx.draw_networkx_nodes(g, pos, ax=ax, node_color=[_COLOUR[k] for k in kinds], node_size=260)
        labels = {n: _label(graph.nodes[n]) for n in g.nodes}
        above = {n: (x, y + 0.03) for n, (x, y) in pos.items()}
        nx.draw_networkx_labels(g, above, labels=labels, ax=ax, font_size=7, verticalalignment="bottom")
        ax.set_title(f"model {graph.model_id}: {len(graph.entries)} log entries", fontsize=10)
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k.value) for k, c in _COLOUR.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _label(node: dict[str, object]) -> str:
    label = str(node["label"])
    if node["kind"] == NodeKind.BUDGET.value:
        return f"{label}\nε={float(node['epsilon']):.2f}"  # type: ignore[arg-type]
    return label if len(label) <= 30 else label[:28] + "…"
