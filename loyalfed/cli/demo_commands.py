"""`loyalfed demo`: the end-to-end demo on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("loyalfed-demo"), "--out", help="Output folder."),
    seed: int = typer.Option(7, "--seed", help="Seed for every random choice."),
) -> None:
    """Build the Complete Journey federation and run every stage; writes report.html."""
    from loyalfed.demo import run_demo
    from loyalfed.demo.stages import default_stages

    run_demo(default_stages(), out_dir=out, seed=seed)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
