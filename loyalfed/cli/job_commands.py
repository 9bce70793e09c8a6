"""`loyalfed job submit|list|status|logs|stop`: an analyst's jobs, through the coordinator service."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from loyalfed.cli.service_client import (
    CaOption,
    ClientOptions,
    ConfigOption,
    JsonOption,
    ServiceClientError,
    TokenOption,
    UrlOption,
    connect,
)

job = typer.Typer(help="Federated jobs on the coordinator (submit, watch, stop)", no_args_is_help=True)
_TERMINAL = {"finished", "failed", "stopped"}


def register(app: typer.Typer) -> None:
    app.add_typer(job, name="job")


def _print(payload: Any, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        Console().print(text)


def read_spec(path: Path) -> dict[str, Any]:
    """A job spec file (YAML or JSON mapping of protocol.JobSpec fields)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ServiceClientError(f"{path}: cannot read the job spec ({type(err).__name__})") from err
    if not isinstance(data, dict):
        raise ServiceClientError(f"{path}: a job spec is a mapping of fields (task, policy_id, epsilon…)")
    return data


@job.command("submit")
def submit(
    spec_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Job spec (YAML or JSON)")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job; it waits for every partner's signed approval, then runs."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        created = client.post("/jobs", read_spec(spec_file))
    _print(created, as_json, f"job [bold]{created['job_id']}[/bold] {created['state']}")


@job.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state")] = None,
    task: Annotated[str | None, typer.Option(help="Only jobs of this task")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Jobs, newest first."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        jobs = client.get("/jobs", state=state, task=task)
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    table = Table("job", "state", "task", "policy", "submitted", "reason")
    for item in jobs:
        table.add_row(
            item["job_id"],
            item["state"],
            item["task"],
            f"{item['policy_id']} v{item['policy_version']}",
            item["submitted_at"][:19],
            (item.get("reason") or "")[:60],
        )
    Console().print(table)


@job.command("status")
def status(
    job_id: Annotated[str, typer.Argument(help="Job id")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """A job's state, rounds (nodes answered, ε spent, pooled metrics), refusals and model."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        detail = client.get(f"/jobs/{job_id}")
    if as_json:
        typer.echo(json.dumps(detail, indent=2))
        return
    console = Console()
    console.print(f"[bold]{detail['job_id']}[/bold] {detail['state']} {detail.get('reason') or ''}")
    for entry in detail.get("rounds", []):
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(entry["metrics"].items()))
        console.print(
            f"  round {entry['round']}: {entry['nodes_answered']} nodes, "
            f"ε {entry['epsilon_spent']:.3f} {metrics}"
        )
    for refusal in detail.get("refusals", []):
        console.print(f"  [red]refused by node {refusal['partner_id']}: {refusal['reason']}[/red]")
    if detail.get("model_id"):
        console.print(f"  model {detail['model_id']}")


@job.command("logs")
def logs(
    job_id: Annotated[str, typer.Argument(help="Job id")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls with --follow")] = 2.0,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """A job's log lines (JSON lines with --json); --follow polls until the job ends."""
    after = 0
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        while True:
            # The state before the lines: a job that has ended has written its last line already.
            ended = not follow or client.get(f"/jobs/{job_id}")["state"] in _TERMINAL
            for line in client.get(f"/jobs/{job_id}/logs", after=after):
                after = line["seq"]
                text = (
                    json.dumps(line)
                    if as_json
                    else f"{line['time'][:19]} {line['level']:7} {line['message']}"
                )
                typer.echo(text)
            if ended:
                return
            time.sleep(interval)


@job.command("stop")
def stop(
    job_id: Annotated[str, typer.Argument(help="Job id")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop a job (at once if it has not started; a running job's Flower run is stopped)."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        reply = client.post(f"/jobs/{job_id}/stop")
    _print(reply, as_json, f"job {reply['job_id']} {reply['state']}")
