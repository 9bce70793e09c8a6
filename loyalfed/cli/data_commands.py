"""`loyalfed data …`: build the demo and scale data sets, and validate partner folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

data = typer.Typer(help="Data contract: build demo/synthetic federations, validate partner folders.")

# Exit codes of `data validate`: every row usable / some rows unusable / a file cannot be read.
EXIT_OK, EXIT_UNUSABLE_ROWS, EXIT_UNREADABLE = 0, 1, 2


def register(app: typer.Typer) -> None:
    app.add_typer(data, name="data", no_args_is_help=True)


@data.command("complete-journey")
def complete_journey(
    out: Path = typer.Option(..., "--out", help="Federation folder to create."),
    seed: int = typer.Option(7, "--seed", help="Seed for identifiers, consents and tenure."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON to stdout."),
) -> None:
    """Build the six-partner FreshMart/CarePlus/FuelGo federation from dunnhumby's Complete Journey."""
    from loyalfed.datasets.complete_journey import build_complete_journey_federation
    from participant_node.data import load_federation

    with Console(stderr=True).status("building the Complete Journey federation", spinner="dots") as status:
        if as_json:
            status.stop()
        folder = build_complete_journey_federation(out, seed=seed)
    summary = json.loads((folder / "complete_journey_build.json").read_text())
    if as_json:
        typer.echo(json.dumps({"federation": str(folder), **summary}, indent=2))
        return
    table = Table(title=f"Complete Journey federation in {folder}")
    table.add_column("partner", no_wrap=True, min_width=len("freshmart-north"))
    table.add_column("kind")
    for column in ("members", "transactions", "consents", "campaigns"):
        table.add_column(column, justify="right")
    for partner in load_federation(folder).partners:  # federation.toml order, not JSON key order
        counts = summary["partners"][partner.partner_id]
        cells = [
            f"{counts[k]:,}" if k in counts else "—"
            for k in ("members", "transactions", "consents", "campaigns")
        ]
        table.add_row(partner.partner_id, partner.kind.value, *cells)
    Console().print(table)


@data.command("synth")
def synth(
    members: int = typer.Option(..., "--members", min=1, help="Members across the federation."),
    partners: int = typer.Option(4, "--partners", min=1, max=64, help="Number of partner nodes."),
    seed: int = typer.Option(7, "--seed", help="Seed for every random draw."),
    out: Path = typer.Option(..., "--out", help="Federation folder to create."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON to stdout."),
) -> None:
    """Generate a synthetic federation calibrated on Complete Journey marginals (chunked, bounded memory)."""
    from loyalfed.datasets.synthetic import SynthConfig, generate_synthetic_federation

    config = SynthConfig(members=members, partners=partners, seed=seed)
    with _progress(disabled=as_json) as progress:
        task = progress.add_task("generating members", total=members)
        result = generate_synthetic_federation(
            out, config, on_progress=lambda done: progress.update(task, completed=done)
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title=f"Synthetic federation in {out}")
    for column in ("partner", "members", "transactions", "consents", "campaigns"):
        table.add_column(column, justify="left" if column == "partner" else "right")
    for partner, counts in result.partners.items():
        table.add_row(
            partner, *(f"{counts[k]:,}" for k in ("members", "transactions", "consents", "campaigns"))
        )
    Console().print(table)
    Console().print(f"{result.seconds:.1f} s")


@data.command("validate")
def validate(
    folder: Path = typer.Argument(..., help="A partner folder or a federation folder."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON to stdout."),
) -> None:
    """Check files against the data contract; exit 1 if rows are unusable, 2 if a file cannot be read.

    Usable but implausible rows (future dates, outsized amounts, refunds beyond purchases) are
    reported as warnings and do not change the exit code.
    """
    from participant_node.data import DataContractError, is_partner_folder, load_federation

    try:
        paths = [folder] if is_partner_folder(folder) else [p.path for p in load_federation(folder).partners]
    except DataContractError as err:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_UNREADABLE) from err
    results = []
    with _progress(disabled=as_json) as progress:
        task = progress.add_task("validating", total=len(paths))
        for path in paths:
            results.append(_validate_partner(path))
            progress.advance(task)
    code = max((r["exit_code"] for r in results), default=EXIT_OK)
    if as_json:
        typer.echo(json.dumps({"ok": code == EXIT_OK, "exit_code": code, "partners": results}, indent=2))
    else:
        console = Console()
        for result in results:
            _print_partner(console, result)
    # SystemExit, not typer.Exit: under `app(standalone_mode=False)` click turns typer.Exit into a
    # return value, which the console-script entry point would drop (exit 0 on bad data).
    raise SystemExit(code)


def _validate_partner(path: Path) -> dict[str, Any]:
    from participant_node.data import DataContractError, validate_partner

    try:
        report = validate_partner(path)  # chunk by chunk: memory for one chunk, not the files
    except DataContractError as err:
        return {
            "partner": path.name,
            "ok": False,
            "exit_code": EXIT_UNREADABLE,
            "error": str(err),
            "files": [],
        }
    result = report.to_dict()
    result["exit_code"] = EXIT_OK if report.ok else EXIT_UNUSABLE_ROWS
    return result


def _print_partner(console: Console, result: dict[str, Any]) -> None:
    mark = "[green]ok[/green]" if result["ok"] else "[red]problems[/red]"
    console.print(f"[bold]{result['partner']}[/bold]: {mark}")
    if "error" in result:
        console.print(f"  [bold red]error:[/bold red] {result['error']}", highlight=False)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("file", "rows read", "rows usable", "rows unusable"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for file in result["files"]:
        unusable = f"[red]{file['rows_unusable']:,}[/red]" if file["rows_unusable"] else "0"
        table.add_row(file["file"], f"{file['rows_read']:,}", f"{file['rows_usable']:,}", unusable)
    console.print(table)
    for file in result["files"]:
        for problem in file["problems"]:
            console.print(
                f"  [red]✗[/red] {_located(problem)} — {problem['count']:,} row(s) unusable",
                highlight=False,
                soft_wrap=True,
            )
        for warning in file["warnings"]:
            console.print(
                f"  [yellow]![/yellow] {_located(warning)} — {warning['count']:,} row(s)",
                highlight=False,
                soft_wrap=True,
            )
        for column, why in file["skipped_columns"].items():
            console.print(f"  [yellow]![/yellow] {file['file']}, column '{column}': {why}", highlight=False)
        if file["ignored_columns"]:
            console.print(f"  note: {file['file']}: ignored columns {', '.join(file['ignored_columns'])}")


def _located(problem: dict[str, Any]) -> str:
    """'file, lines 2, 5 (+3 more), column 'c': reason' from a problem's or warning's JSON form."""
    label = next(k for k in problem if k in ("lines", "rows"))
    shown = problem[label]
    noun = label if problem["count"] > 1 else label[:-1]
    more = f" (+{problem['count'] - len(shown)} more)" if problem["count"] > len(shown) else ""
    where = f"{problem['file']}, {noun} {', '.join(map(str, shown))}{more}"
    return f"{where}, column '{problem['column']}': {problem['reason']}"


def _progress(*, disabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=disabled,
        transient=True,
    )
