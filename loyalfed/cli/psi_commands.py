"""`loyalfed psi …`: run a PSI session between two member files, and benchmark the protocol."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from audit.lineage_event import EventType
from loyalfed.cli import command_lineage
from loyalfed.cli.audit_trail import audited
from loyalfed.cli.psi_cache_commands import cache
from loyalfed.cli.psi_files import (
    SECRET_ENV,
    id_column_values,
    identifier_kind,
    print_report,
    run_secret,
)
from loyalfed.cli.psi_member_tables import (
    gated_member_table,
    moment_of_use,
    partner_folder,
    require_matching_policy,
)
from psi.wire import DEFAULT_GROUP, PsiGroup, PsiMode


class GroupChoice(StrEnum):
    """Short names for the wire suites of ``psi.PsiGroup`` on the command line."""

    X25519 = "x25519"
    RISTRETTO255 = "ristretto255"

    @property
    def suite(self) -> PsiGroup:
        return PsiGroup[self.name]


DEFAULT_GROUP_CHOICE = GroupChoice[DEFAULT_GROUP.name]

psi = typer.Typer(help="Private set intersection between two member files.", no_args_is_help=True)

psi.add_typer(cache, name="cache")


def register(app: typer.Typer) -> None:
    app.add_typer(psi, name="psi")


def _values(frame: Any, path: Path, column: str, rows: list[int]) -> list[int]:
    import pandas as pd

    raw = pd.to_numeric(pd.Series(id_column_values(frame, path, column)).iloc[rows], errors="coerce")
    bad = raw.isna() | (raw < 0) | (raw != raw.round())
    if bad.any():
        row = int(raw.index[bad.to_numpy()][0])
        raise ValueError(f"{path}: row {row + 2}, column {column!r}: expected a non-negative whole number")
    return [int(v) for v in raw]


@psi.command("run")
@audited(EventType.PSI_RUN, command_lineage.psi_run, role="analyst")
def run(
    a: Path = typer.Option(..., "--a", help="Initiator's partner folder (or its members file)."),
    b: Path = typer.Option(..., "--b", help="Responder's partner folder (or its members file)."),
    purpose: str = typer.Option(
        "marketing.cross_brand_matching", "--purpose", help="Consent purpose the matching is for."
    ),
    at: str | None = typer.Option(None, "--at", help="Moment of use for consent checks (ISO; default now)."),
    id_column: str = typer.Option("phone", "--id-column", help="Identifier column: phone or email."),
    mode: PsiMode = typer.Option(PsiMode.INTERSECTION, "--mode", help="What is learned."),
    value_column: str | None = typer.Option(None, "--value-column", help="Sum mode: B's value column."),
    reveal_both: bool = typer.Option(False, "--reveal-both", help="Intersection mode: B learns it too."),
    default_region: str = typer.Option("US", "--default-region", help="Region for national phones."),
    secret_file: Path | None = typer.Option(None, "--secret-file", help=f"Federation secret ({SECRET_ENV})."),
    paillier_bits: int = typer.Option(2048, "--paillier-bits", help="Sum mode: Paillier key size."),
    group: GroupChoice = typer.Option(DEFAULT_GROUP_CHOICE, "--group", help="Prime-order group."),
    out: Path | None = typer.Option(None, "--out", help="Intersection: write A's matched member_ids here."),
    policy: str | None = typer.Option(
        None,
        "--policy",
        help="The data-use policy the matching runs under (file, id, id@version or hash): it must "
        "allow --purpose and be approved by both partners' data officers; its hash is audited.",
    ),
    registry: Path = typer.Option(
        Path(".loyalfed") / "registry.sqlite",
        "--registry",
        envvar="LOYALFED_REGISTRY",
        help="Policy registry.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON to stdout."),
) -> None:
    """Run both parties locally over the real wire format and report what each side learns.

    Each side matches only its members the node gate admits: consent to ``--purpose`` covering the
    other partner, not withdrawn or erased, active inside the retention window. With ``--policy``,
    the policy is checked before any member file is read.
    """
    from psi.identifiers import prepare_identifiers
    from psi.local_run import run_local
    from psi.wire import Reveal

    psi_mode, kind = mode, identifier_kind(id_column)
    if psi_mode == PsiMode.SUM and not value_column:
        raise ValueError("--mode sum needs --value-column (a whole-number column of B, e.g. points)")
    secret = run_secret(secret_file)
    moment, ids = moment_of_use(at), {"a": partner_folder(a).name, "b": partner_folder(b).name}
    if policy is not None:
        require_matching_policy(registry, policy, purpose=purpose, partners=(ids["a"], ids["b"]))
    tables = {
        side: gated_member_table(
            path,
            purpose=purpose,
            recipient=ids["b" if side == "a" else "a"],
            at=moment,
            columns=(id_column, value_column) if side == "b" and value_column else (id_column,),
        )
        for side, path in (("a", a), ("b", b))
    }
    frames = {side: table.frame for side, table in tables.items()}
    prepared = {
        side: prepare_identifiers(
            id_column_values(frame, path, id_column), kind, secret=secret, default_region=default_region
        )
        for (side, frame), path in zip(frames.items(), (a, b), strict=True)
    }
    values = (
        _values(frames["b"], b, value_column, prepared["b"].rows)
        if psi_mode == PsiMode.SUM and value_column
        else None
    )
    started = time.perf_counter()
    with Console(stderr=True).status(f"PSI ({psi_mode}) over the wire format", spinner="dots") as status:
        if as_json:
            status.stop()
        result = run_local(
            prepared["a"].items,
            prepared["b"].items,
            mode=psi_mode,
            reveal=Reveal.BOTH if reveal_both else Reveal.INITIATOR,
            responder_values=values,
            paillier_bits=paillier_bits,
            group=group.suite,
        )
    report = _run_report(result, prepared, time.perf_counter() - started)
    report["consent"] = {side: table.report() for side, table in tables.items()}
    if out is not None and result.initiator.matched_indices is not None:
        _write_matches(out, frames["a"], a, [prepared["a"].rows[i] for i in result.initiator.matched_indices])
        report["matches_written_to"] = str(out)
    print_report(report, as_json)


def _run_report(result: Any, prepared: dict[str, Any], seconds: float) -> dict[str, Any]:
    def unusable(side: str) -> dict[str, int]:
        p = prepared[side]
        return {"malformed": p.malformed, "empty": p.empty, "duplicates": p.duplicates}

    return {
        "mode": str(result.initiator.mode),
        "a_set_size": result.initiator.initiator_size,
        "b_set_size": result.initiator.responder_size,
        "a_learns": {"cardinality": result.initiator.cardinality},
        "b_learns": {
            "cardinality": result.responder.cardinality,
            "intersection_sum": result.responder.intersection_sum,
        },
        "unusable_rows": {"a": unusable("a"), "b": unusable("b")},
        "bytes_a_to_b": result.wire.to_responder,
        "bytes_b_to_a": result.wire.to_initiator,
        "seconds": round(seconds, 3),
    }


def _write_matches(out: Path, frame: Any, path: Path, rows: list[int]) -> None:
    from loyalfed.cli.csv_output import write_csv

    ids = id_column_values(frame, path, "member_id")
    write_csv(out, ["member_id"], ([ids[r]] for r in rows))


@psi.command("bench")
def bench(
    size: list[int] = typer.Option([10_000], "--size", help="Items per side (repeatable)."),
    overlap: float = typer.Option(0.5, "--overlap", min=0.0, max=1.0, help="Shared fraction."),
    no_openmined: bool = typer.Option(False, "--no-openmined", help="Skip the openmined-psi baseline."),
    group: GroupChoice = typer.Option(DEFAULT_GROUP_CHOICE, "--group", help="Prime-order group."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON to stdout."),
) -> None:
    """Benchmark this PSI against openmined-psi (RAW) on the same sets, one process per party."""
    from psi.benchmark import run_benchmark

    console = Console(stderr=True, quiet=as_json)
    report = run_benchmark(
        size,
        overlap_fraction=overlap,
        compare_openmined=not no_openmined,
        progress=console.print,
        group=group.suite.value,
    )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="PSI benchmark (wall seconds, one process per party)")
    for column in ("size", "implementation", "wall s", "cpu s", "B/elt →B", "B/elt →A", "peak MB", "correct"):
        table.add_column(column, justify="right")
    for row in report["results"]:
        for name in ("loyalfed", "openmined"):
            if name in row:
                r = row[name]
                peak = max(r["peak_rss_mb"].values())
                table.add_row(
                    f"{row['size']:,}",
                    name,
                    f"{r['wall_s']:.2f}",
                    f"{r['cpu_s']:.2f}",
                    f"{r['bytes_per_element_to_responder']:.1f}",
                    f"{r['bytes_per_element_to_initiator']:.1f}",
                    f"{peak:.0f}",
                    str(r["correct_vs_plain_sets"]),
                )
    Console().print(table)
