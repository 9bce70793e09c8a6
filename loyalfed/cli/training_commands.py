"""`loyalfed train`, `loyalfed score` and `loyalfed budget …`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from audit.lineage_event import EventType
from loyalfed.cli import command_lineage as lineage
from loyalfed.cli.audit_trail import AuditStep, audit_step, audited
from models.task import ModelKind
from models.task import Task as TaskName
from protocol import JobSpec, ModelCard, StrategyName, parse_job_spec

if TYPE_CHECKING:  # the ServerApp pulls in Flower: load it only when a job runs
    from coordinator.job_outcome import RoundReport
    from coordinator.job_progress import RoundCallback
    from loyalfed.cli.training_audit import AuditedLedger

budget = typer.Typer(help="Privacy budgets: yearly ε caps per partner dataset and what jobs spent.")


def register(app: typer.Typer) -> None:
    """Add the training commands to the root app."""
    app.command("train")(train)
    app.command("score")(audited(EventType.MODEL_SCORED, lineage.scoring, role="analyst")(score))
    app.add_typer(budget, name="budget", no_args_is_help=True)


def default_ledger_path(federation: Path) -> Path:
    """Where the coordinator keeps its budget ledger for a federation folder by default."""
    return federation / ".coordinator" / "budget_ledger.sqlite"


def _open_ledger(ledger: Path | None, federation: Path) -> AuditedLedger:
    from loyalfed.cli.training_audit import AuditedLedger
    from participant_node.private_state import private_directory, private_file

    path = ledger or default_ledger_path(federation)
    private_file(private_directory(path.parent) / path.name)  # coordinator state: 0700 folder, 0600 file
    return AuditedLedger(f"sqlite:///{path}")


def train(
    task: TaskName = typer.Option(..., "--task", help="churn or propensity."),
    federation: Path = typer.Option(
        ..., "--federation", help="Federation folder (one subfolder per partner)."
    ),
    epsilon: float = typer.Option(..., "--epsilon", help="Member-level ε per node for the whole job."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (model.pt, model_card.json)."),
    delta: float = typer.Option(1e-5, "--delta", help="δ (each node uses min(δ, 1/n))."),
    rounds: int = typer.Option(8, "--rounds", min=1, help="Federated rounds."),
    model: ModelKind = typer.Option(ModelKind.LOGREG, "--model", help="logreg or mlp."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Labelling date YYYY-MM-DD (task default if unset)."
    ),
    horizon_days: int | None = typer.Option(None, "--horizon-days", min=1, help="Label horizon in days."),
    partners: str | None = typer.Option(
        None, "--partners", help="Comma-separated partner ids (default: store groups)."
    ),
    strategy: StrategyName = typer.Option(StrategyName.FEDAVG, "--strategy", help="fedavg or fedprox."),
    proximal_mu: float = typer.Option(
        0.01, "--proximal-mu", help="FedProx μ (used with --strategy fedprox)."
    ),
    local_steps: int | None = typer.Option(
        None, "--local-steps", min=1, help="DP-SGD steps per node per round (default 5)."
    ),
    server_momentum: float | None = typer.Option(
        None, "--server-momentum", help="Server momentum β in [0, 1) (default 0.5; 0 = plain averaging)."
    ),
    average_last: int | None = typer.Option(
        None, "--average-last", min=1, help="Publish the mean of the last N global models (default 4)."
    ),
    min_nodes: int = typer.Option(2, "--min-nodes", min=1, help="Fewest nodes a round may complete with."),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate every N rounds (0: at the end)."),
    patience: int = typer.Option(0, "--patience", min=0, help="Stop after N evaluations without AUC gain."),
    category_mix: bool = typer.Option(
        False, "--category-mix", help="Add 9 department spend shares to the 18 behavioural features."
    ),
    standardise: bool = typer.Option(
        True,
        "--standardise/--public-scaling-only",
        help="Pool the nodes' feature moments (k-member aggregates, not DP) into one standardisation "
        "before training (default), or train on the schema's public scaling alone.",
    ),
    secure_agg: bool = typer.Option(
        False, "--secure-agg", help="SecAgg+: the coordinator sees only the sum of masked updates."
    ),
    secure_evaluation: bool = typer.Option(
        False,
        "--secure-evaluation",
        help="Sum the held-out score histograms under SecAgg+ (plain training rounds): the card's AUC "
        "and ROC are the exact figures instead of figures from per-node DP-noised counts.",
    ),
    ledger: Path | None = typer.Option(
        None, "--ledger", help="Budget ledger SQLite file (default: FED/.coordinator)."
    ),
    policy: str = typer.Option(
        ...,
        "--policy",
        help="The data-use policy the job runs under (file, id, id@version or hash), approved by every "
        "partner's data officer (`loyalfed policy draft-local FILE --approve-as-local-officers` for "
        "experiments).",
    ),
    registry: Path = typer.Option(
        Path(".loyalfed") / "registry.sqlite",
        "--registry",
        envvar="LOYALFED_REGISTRY",
        help="Policy registry file.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only the model card as JSON."),
) -> None:
    """Train a churn or propensity model with federated DP-SGD over the partners of a federation."""
    tuning = {"local_steps": local_steps, "server_momentum": server_momentum, "average_last": average_last}
    options = {
        **{name: value for name, value in tuning.items() if value is not None},
        "task": task,
        "model": model,
        "epsilon": epsilon,
        "delta": delta,
        "rounds": rounds,
        "strategy": strategy,
        "min_nodes": min_nodes,
        "eval_every": eval_every,
        "patience": patience,
        "secure_agg": secure_agg,
        "secure_evaluation": secure_evaluation,
        "category_mix": category_mix,
        "standardise": standardise,
        "proximal_mu": proximal_mu if strategy is StrategyName.FEDPROX else 0.0,
        "as_of": date.fromisoformat(as_of) if as_of else None,
        "horizon_days": horizon_days,
    }
    chosen = [p.strip() for p in partners.split(",") if p.strip()] if partners else None
    # Each step of the job is appended to the audit log as it happens (loyalfed.cli.training_audit).
    with audit_step(
        EventType.JOB_FINISHED, role="analyst", federation=federation, refused=EventType.JOB_REFUSED
    ) as step:
        job = parse_job_spec(options)
        card = _run_job(job, federation, chosen, ledger, policy, registry, out, step, as_json=as_json)
    if as_json:
        typer.echo(card.model_dump_json(indent=2))
        return
    _print_card(Console(), card, out)


def _run_job(
    job: JobSpec,
    federation: Path,
    chosen: list[str] | None,
    ledger: Path | None,
    policy: str,
    registry: Path,
    out: Path,
    step: AuditStep,
    *,
    as_json: bool,
) -> ModelCard:
    """Run the job with its trail appended as it goes; write the model; record its publication."""
    from coordinator.model_card import build_model_card, write_model
    from loyalfed.cli.training_audit import JobTrail
    from loyalfed.federated_run import JobPolicies, run_federated_job
    from protocol import read_model_card

    policy_hash = lineage.policy_hash_of(policy, registry)
    book = _open_ledger(ledger, federation)
    console = Console(stderr=True, quiet=as_json)
    try:
        with _round_progress(console, job) as on_round:
            book.trail = JobTrail(step, job, policy_hash=policy_hash, on_round=on_round)
            run = run_federated_job(
                federation,
                job,
                policies=JobPolicies.one_for_all(registry, policy, [job]),
                partner_ids=chosen,
                ledger=book,
                progress=book.trail,
                checkpoint_dir=out / "checkpoints",
            )
    finally:
        book.close()
    assert run.outcome.arrays is not None
    card = build_model_card(run.outcome, members_may_overlap=run.members_may_overlap, policy=run.policy)
    write_model(out, run.outcome.arrays, card)
    lineage.training(step, out)
    return read_model_card(out)


@contextmanager
def _round_progress(console: Console, job: JobSpec) -> Iterator[RoundCallback]:
    """A Rich progress bar over the job's rounds; yields the ServerApp's per-round callback."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=console.quiet,
    )
    task = progress.add_task(f"{job.task} rounds", total=job.rounds, status="starting nodes")

    def on_round(report: RoundReport) -> None:
        nodes = f"{report.nodes_ok}/{report.nodes_ok + report.nodes_failed}"
        progress.update(
            task, completed=report.server_round, status=f"ε≤{report.max_epsilon:.2f} nodes {nodes}"
        )

    with progress:
        yield on_round


def _print_card(console: Console, card: ModelCard, out: Path) -> None:
    metrics = card.metrics
    assert metrics is not None  # a published model was evaluated
    console.print(
        f"[green]✓[/green] {card.task} model in {out}: AUC {metrics.auc:.3f}, "
        f"PR-AUC {metrics.pr_auc:.3f}, Brier {metrics.brier:.3f}; "
        f"worst-case member ε={card.epsilon_worst_case_member:.2f} (δ={card.delta:g})"
    )
    table = Table(title="nodes")
    for column in ("partner", "members used", "excluded by consent", "ε", "σ", "q", "steps", "AUC"):
        table.add_column(column, justify="left" if column == "partner" else "right")
    for node in card.nodes:
        auc = metrics.node_auc.get(node.partner_id)
        table.add_row(
            node.partner_id,
            str(node.members_used),
            str(node.members_excluded_by_consent),
            f"{node.epsilon:.2f}",
            f"{node.noise_multiplier:.2f}",
            f"{node.sample_rate:.3f}",
            str(node.steps),
            "-" if auc is None else f"{auc:.3f}",
        )
    console.print(table)


def score(
    model: Path = typer.Option(..., "--model", help="Model folder written by `loyalfed train`."),
    federation: Path = typer.Option(..., "--federation", help="Federation folder."),
    as_of: str = typer.Option(..., "--as-of", help="Feature date YYYY-MM-DD."),
    out: Path = typer.Option(
        ..., "--out", help="Folder: one CSV per partner (<partner_id>.csv), each holding only its members."
    ),
    partners: str | None = typer.Option(
        None, "--partners", help="Comma-separated partner ids (default: store groups)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON (files and band counts)."),
) -> None:
    """Score every consenting member at its own node: a churn warning list per partner, never pooled."""
    from loyalfed.cli.csv_output import write_csv
    from loyalfed.federated_run import select_partners
    from participant_node.data import load_federation
    from participant_node.training.churn_warning_list import warning_list

    chosen = [p.strip() for p in partners.split(",") if p.strip()] if partners else None
    moment = datetime.combine(date.fromisoformat(as_of), datetime.min.time())
    now = datetime.now(UTC).replace(tzinfo=None)
    summary: dict[str, dict[str, object]] = {}
    # Each partner's members go to that partner's own file only: per-member scores are the node's.
    for partner_id, path, _ in select_partners(load_federation(federation), chosen):
        table = warning_list(path, model, as_of=moment, now=now)
        target = out / f"{partner_id}.csv"
        write_csv(target, list(table.columns), table.itertuples(index=False, name=None))
        bands = table["band"].value_counts().to_dict() if "band" in table else {}
        summary[partner_id] = {"file": str(target), "members": len(table), "bands": bands}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for partner_id, entry in summary.items():
        Console(stderr=True).print(
            f"[green]✓[/green] {partner_id}: {entry['members']:,} members in {entry['file']} {entry['bands']}"
        )


@budget.command("set-cap")
@audited(EventType.BUDGET_SET, lineage.budget_cap, role="data_officer", actor_param="officer")
def set_cap(
    partner: str = typer.Option(..., "--partner", help="Partner (dataset) id."),
    epsilon: float = typer.Option(..., "--epsilon", help="Yearly ε cap."),
    federation: Path = typer.Option(..., "--federation", help="Federation folder."),
    year: int | None = typer.Option(None, "--year", help="Calendar year (default: this year)."),
    officer: str = typer.Option("data-officer", "--officer", help="Who sets the cap (recorded)."),
    ledger: Path | None = typer.Option(None, "--ledger", help="Budget ledger SQLite file."),
) -> None:
    """Set a partner dataset's yearly privacy-budget cap (as its data officer)."""
    from participant_node.data import load_federation

    known = load_federation(federation).partner_ids
    if partner not in known:
        raise typer.BadParameter(
            f"unknown partner {partner!r}; the federation has {', '.join(known)}", param_hint="--partner"
        )
    book = _open_ledger(ledger, federation)
    try:
        book.set_cap(partner, epsilon, year=year or datetime.now(UTC).year, set_by=officer)
    finally:
        book.close()
    Console(stderr=True).print(f"[green]✓[/green] {partner}: yearly cap ε={epsilon:g}")


@budget.command("show")
def show(
    federation: Path = typer.Option(..., "--federation", help="Federation folder."),
    year: int | None = typer.Option(None, "--year", help="Calendar year (default: this year)."),
    ledger: Path | None = typer.Option(None, "--ledger", help="Budget ledger SQLite file."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON."),
) -> None:
    """Show every partner dataset's cap, spent and remaining ε for a year."""
    from participant_node.data import load_federation

    the_year = year or datetime.now(UTC).year
    book = _open_ledger(ledger, federation)
    try:
        rows: list[dict[str, Any]] = [
            {
                "partner_id": p.partner_id,
                "cap": book.cap(p.partner_id, year=the_year),
                "spent": round(book.spent(p.partner_id, year=the_year), 4),
            }
            for p in load_federation(federation).partners
        ]
    finally:
        book.close()
    if as_json:
        typer.echo(json.dumps({"year": the_year, "budgets": rows}, indent=2))
        return
    table = Table(title=f"privacy budgets {the_year}")
    for column in ("partner", "cap ε", "spent ε", "remaining ε"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["partner_id"], f"{row['cap']:g}", f"{row['spent']:.2f}", f"{row['cap'] - row['spent']:.2f}"
        )
    Console().print(table)


__all__ = ["default_ledger_path", "register"]
