"""The service-backed CLI against a real coordinator over HTTP on loopback: officers sign locally,
analysts submit and watch jobs, one-line errors for an unreachable service, 401 and 403."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from coordinator.service import CoordinatorSettings
from loyalfed.cli.app import app, main
from loyalfed.cli.error_handling import exit_code_for, public_message
from loyalfed.cli.service_client import ServiceClientError
from tests.coordinator.service.coordinator_federation import (
    PARTNERS,
    Federation,
    job_body,
    live_server,
    policy_document,
    populate,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Federation, Path]]:
    import httpx

    state = tmp_path_factory.mktemp("cli") / "state"
    settings = CoordinatorSettings(state_dir=state, superlink=False)
    with live_server(settings) as url, httpx.Client(base_url=url) as client:
        federation = populate(client, (state / "admin.token").read_text().strip())
        yield url, federation, state.parent


def cli(url: str, token: str, *args: str, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, [*args, "--url", url, "--token", token], env=env)
    return result


def refusal(result: Any) -> str:
    """The one-line message and exit code ``loyalfed``'s process boundary makes of a failed command."""
    assert isinstance(result.exception, ServiceClientError), result.output
    assert exit_code_for(result.exception) == 2
    message = public_message(result.exception)
    assert "\n" not in message
    return message


def json_of(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_officer_keygen_register_then_sign_approve_and_reject(served: tuple[str, Federation, Path]) -> None:
    url, federation, root = served
    north, south = PARTNERS
    keys = root / "north-officer"
    made = json_of(runner.invoke(app, ["officer", "keygen", "--out", str(keys), "--json"]))
    assert stat.S_IMODE(Path(made["private_key"]).stat().st_mode) == 0o600
    officer = federation.tokens[f"officer-{north}"]
    assert cli(url, officer, "officer", "register", "--public-key", made["public_key"]).exit_code == 0

    policy_file = root / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy_document("cli-policy")), encoding="utf-8")
    drafted = json_of(cli(url, federation.tokens["analyst"], "policy", "draft", str(policy_file), "--json"))
    assert drafted["version"] == 1
    pending = json_of(cli(url, officer, "policy", "list", "--pending", "--json"))
    assert "cli-policy" in [p["policy_id"] for p in pending]
    approved = json_of(
        cli(url, officer, "policy", "approve", "cli-policy", "--key", made["private_key"], "--json")
    )
    assert approved["decision"] == "approved" and approved["partner_id"] == north

    # A key that was never registered: the coordinator refuses the signature (403, vague).
    stray = json_of(runner.invoke(app, ["officer", "keygen", "--out", str(root / "stray"), "--json"]))
    forged = cli(
        url,
        federation.tokens[f"officer-{south}"],
        "policy",
        "approve",
        "cli-policy",
        "--key",
        stray["private_key"],
    )
    assert refusal(forged) == "action refused by the coordinator (403): signed decision is not valid"

    policy_file.write_text(yaml.safe_dump(policy_document("cli-policy", epsilon=2.0)), encoding="utf-8")
    assert (
        json_of(cli(url, federation.tokens["analyst"], "policy", "draft", str(policy_file), "--json"))[
            "version"
        ]
        == 2
    )
    rejected = cli(
        url,
        officer,
        "policy",
        "reject",
        "cli-policy",
        "--key",
        made["private_key"],
        "--reason",
        "ε too high for our notice",
        "--json",
    )
    assert json_of(rejected)["decision"] == "rejected"
    changes = json_of(cli(url, officer, "policy", "diff", "cli-policy", "1", "2", "--json"))["changes"]
    assert changes == [{"path": "privacy.epsilon", "before": 3.0, "after": 2.0}]
    shown = json_of(cli(url, federation.tokens["auditor"], "policy", "show", "cli-policy", "--json"))
    assert shown["approvals"][north] == "rejected" and len(shown["versions"]) == 2


def test_job_submit_list_status_logs_stop(served: tuple[str, Federation, Path]) -> None:
    url, federation, root = served
    federation.call("analyst", "POST", "/policies", json={"document": policy_document()})
    spec = root / "job.yaml"
    spec.write_text(yaml.safe_dump(job_body()), encoding="utf-8")
    analyst = federation.tokens["analyst"]
    created = json_of(cli(url, analyst, "job", "submit", str(spec), "--json"))
    assert created["state"] == "awaiting_approval"
    listed = json_of(cli(url, analyst, "job", "list", "--state", "awaiting_approval", "--json"))
    assert created["job_id"] in [j["job_id"] for j in listed]
    status = json_of(cli(url, federation.tokens["auditor"], "job", "status", created["job_id"], "--json"))
    assert status["spec"]["task"] == "churn"
    assert json_of(cli(url, analyst, "job", "stop", created["job_id"], "--json"))["state"] == "stopped"
    followed = cli(url, analyst, "job", "logs", created["job_id"], "--follow", "--json")
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert lines[-1]["message"].startswith("state stopped")
    assert json_of(cli(url, analyst, "model", "list", "--json")) == []
    assert json_of(cli(url, analyst, "node", "status", "--json")) == []


def test_admin_issues_tokens_and_errors_are_one_line(served: tuple[str, Federation, Path]) -> None:
    url, federation, _root = served
    issued = json_of(
        cli(
            url,
            federation.admin,
            "admin",
            "token",
            "issue",
            "--role",
            "auditor",
            "--org",
            "federation",
            "--name",
            "second auditor",
            "--json",
        )
    )
    assert json_of(cli(url, issued["token"], "job", "list", "--json")) == json_of(
        cli(url, federation.tokens["auditor"], "job", "list", "--json")
    )
    refused = cli(
        url,
        federation.tokens["analyst"],
        "admin",
        "token",
        "issue",
        "--role",
        "analyst",
        "--org",
        "federation",
        "--name",
        "x",
    )
    assert refusal(refused).startswith(
        "action refused by the coordinator (403): role analyst may not token.issue"
    )
    assert refusal(cli(url, "not-a-token", "job", "list")).startswith(
        "credential refused by the coordinator (401)"
    )
    assert refusal(cli("http://127.0.0.1:9", "x", "job", "list")).startswith(
        "cannot reach the coordinator at http://127.0.0.1:9"
    )


def test_the_command_prints_one_line_and_exits_2_when_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["loyalfed", "job", "list", "--url", "http://127.0.0.1:9"])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [
        "error: cannot reach the coordinator at http://127.0.0.1:9 (ConnectError); check --url / LOYALFED_URL"
    ]


def test_settings_come_from_flags_then_environment_then_config_file(
    served: tuple[str, Federation, Path], tmp_path: Path
) -> None:
    url, federation, _root = served
    config = tmp_path / "client.toml"
    config.write_text(f'url = "{url}"\ntoken = "{federation.tokens["auditor"]}"\n', encoding="utf-8")
    from_file = runner.invoke(app, ["job", "list", "--json", "--config", str(config)])
    assert from_file.exit_code == 0, from_file.output
    env = {"LOYALFED_TOKEN": "wrong-token"}
    from_env = runner.invoke(app, ["job", "list", "--config", str(config)], env=env)
    assert refusal(from_env).startswith("credential refused")  # the environment wins over the file
    flags = runner.invoke(
        app,
        ["job", "list", "--json", "--config", str(config), "--token", federation.tokens["auditor"]],
        env=env,
    )
    assert flags.exit_code == 0  # a flag wins over the environment
