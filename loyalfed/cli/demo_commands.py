"""`loyalfed demo`: the end-to-end demo on embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("loyalfed-demo"), "--out", help="Output folder."),
    seed: int = typer.Option(7, "--seed", help="Seed for every random choice."),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON summary on stdout (progress on stderr)."
    ),
) -> None:
    """Build the Complete Journey federation and run every stage; writes report.html."""
    from rich.console import Console

    from loyalfed.demo import run_demo
    from loyalfed.demo.stages import default_stages

    result = run_demo(default_stages(), out_dir=out, seed=seed, console=Console(stderr=as_json))
    if as_json:
        summary = {
            **result.facts,
            "out_dir": str(result.out_dir),
            "report": str(result.report_html),
            "wall_seconds": round(result.wall_seconds, 2),
            "stage_seconds": {name: round(s, 2) for name, s in result.stage_seconds.items()},
            "stage_cpu_seconds": {name: round(s, 2) for name, s in result.stage_cpu_seconds.items()},
            "summary": [
                {"stage": stage, "what": what, "value": value} for stage, what, value in result.summary
            ],
        }
        typer.echo(json.dumps(summary, indent=1, default=str))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
