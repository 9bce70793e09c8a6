"""Run the demo's stages in order, with progress, timings, a report and a summary table.

A stage is any object with a ``name`` and ``run(ctx)``. Stages share results through
``DemoContext.artefacts`` and write what a person should see into ``ctx.report`` and
``ctx.summary``. Lineage events go through ``ctx.record_lineage``; the audit stage attaches a
sink that writes them to the tamper-evident log (events recorded before it attaches are replayed).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from loyalfed.demo.report import Report

LineageSink = Callable[[dict[str, Any]], None]


@dataclass
class DemoContext:
    """Everything a stage may read or write."""

    out_dir: Path
    seed: int
    console: Console
    report: Report
    artefacts: dict[str, Any] = field(default_factory=dict)
    summary: list[tuple[str, str, str]] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    lineage_sinks: list[LineageSink] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def federation_dir(self) -> Path:
        return self.out_dir / "federation"

    def add_summary(self, stage: str, item: str, value: str) -> None:
        """Add one row to the Rich summary table printed at the end."""
        self.summary.append((stage, item, value))

    def record_lineage(self, event_type: str, **fields: Any) -> None:
        """Record a lineage event (no member identifiers, ever) and forward it to every sink."""
        event = {"event_type": event_type, **fields}
        self.lineage.append(event)
        for sink in self.lineage_sinks:
            sink(event)

    def attach_lineage_sink(self, sink: LineageSink) -> None:
        """Attach a sink and replay the events recorded before it."""
        for event in self.lineage:
            sink(event)
        self.lineage_sinks.append(sink)


class Stage(Protocol):
    name: str

    def run(self, ctx: DemoContext) -> None: ...


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    report_html: Path
    report_markdown: Path
    stage_seconds: dict[str, float]
    summary: list[tuple[str, str, str]] = field(default_factory=list)
    # What stages publish for a machine-readable summary (``loyalfed demo --json``), e.g. the engine.
    facts: dict[str, Any] = field(default_factory=dict)
    # CPU seconds (user + system) of this process and of the processes it started and reaped (the
    # federation's coordinator, nodes, SuperLink, SuperNodes and ClientApps), per stage.
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of every child process it has reaped."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_demo(
    stages: Sequence[Stage], *, out_dir: Path, seed: int = 7, console: Console | None = None
) -> DemoResult:
    """Run ``stages`` in order into ``out_dir``, then write the report and print the summary."""
    console = console or Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out_dir=out_dir, seed=seed, console=console, report=Report("loyalfed demo"))
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    demo_started = time.perf_counter()
    for index, stage in enumerate(stages, start=1):
        console.rule(f"[bold]{index}/{len(stages)} {stage.name}")
        started, cpu_started = time.perf_counter(), cpu_seconds()
        stage.run(ctx)
        seconds[stage.name] = time.perf_counter() - started
        cpu[stage.name] = cpu_seconds() - cpu_started
        console.print(
            f"[green]✓[/green] {stage.name} in {seconds[stage.name]:.1f} s ({cpu[stage.name]:.1f} CPU s)"
        )
    ctx.report.add_table(
        "Stage timings (CPU: this process and the processes it started)",
        ["stage", "seconds", "CPU seconds"],
        [[n, f"{s:.1f}", f"{cpu[n]:.1f}"] for n, s in seconds.items()],
    )
    html_path, md_path = ctx.report.write(out_dir)
    console.print(_summary_table(ctx.summary))
    console.print(f"Report: [bold]{html_path}[/bold] (Markdown: {md_path})")
    return DemoResult(
        out_dir, html_path, md_path, seconds, list(ctx.summary), dict(ctx.facts), cpu,
        wall_seconds=time.perf_counter() - demo_started,
    )  # fmt: skip


def _summary_table(rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title="loyalfed demo summary")
    for column in ("stage", "what", "value"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table
