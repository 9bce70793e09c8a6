"""`loyalfed psi cache build|query|answer|match`: the four file steps of unbalanced PSI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psi_partner_folders import AT, write_matching_partner
from typer.testing import CliRunner

from loyalfed.cli.psi_commands import psi as app

RUNNER = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    holder = write_matching_partner(
        tmp_path / "holder", [(f"h{i}", f"+1 415 555 {i:04d}", "") for i in range(300)]
    )
    # The partner writes national formats; 250..299 are shared, plus one bad and one duplicate row.
    partner = write_matching_partner(
        tmp_path / "partner",
        [(f"p{i}", f"(415) 555-{i:04d}", "") for i in range(250, 370)]
        + [("p-bad", "not a phone", ""), ("p-dup", "415 555 0251", "")],
    )
    secret = tmp_path / "secret"
    secret.write_text("federation-matching-secret-0001\n")
    return {"holder": holder, "partner": partner, "secret": secret, "dir": tmp_path}


def _invoke(*args: str | Path) -> dict:
    result = RUNNER.invoke(app, ["cache", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _steps(files: dict[str, Path]) -> dict[str, Path]:
    d = files["dir"]
    paths = {n: d / n for n in ("tags.bin", "epoch.key", "query.bin", "session.json", "answer.bin")}
    return paths


def test_holder_and_partner_match_through_files(files: dict[str, Path]) -> None:
    p, secret = _steps(files), files["secret"]
    built = _invoke(
        "build", "--set", files["holder"], "--recipient", "partner", "--at", AT,
        "--epoch", "2026-W47", "--out", p["tags.bin"],
        "--key-out", p["epoch.key"], "--secret-file", secret,
    )  # fmt: skip
    assert built["set_size"] == 300 and built["tags_bytes"] == 300 * 12
    assert "joined or left" in built["key_reuse"]["trade_off"] and built["key_reuse"]["epoch"] == "2026-W47"
    queried = _invoke(
        "query", "--set", files["partner"], "--recipient", "holder", "--at", AT,
        "--tags", p["tags.bin"], "--out", p["query.bin"],
        "--state", p["session.json"], "--secret-file", secret,
    )  # fmt: skip
    assert queried["set_size"] == 120 and queried["unusable_rows"] == {
        "malformed": 1,
        "empty": 0,
        "duplicates": 1,
    }
    answered = _invoke("answer", "--key", p["epoch.key"], "--query", p["query.bin"], "--out", p["answer.bin"])
    assert answered["answered_elements"] == 120 and "key_reuse" in answered
    out = files["dir"] / "matches.csv"
    matched = _invoke(
        "match", "--set", files["partner"], "--recipient", "holder", "--at", AT,
        "--tags", p["tags.bin"], "--state", p["session.json"],
        "--answer", p["answer.bin"], "--out", out, "--secret-file", secret,
    )  # fmt: skip
    assert matched["cardinality"] == 50 and matched["holder_set_size"] == 300
    assert out.read_text().splitlines() == ["member_id"] + [f"p{i}" for i in range(250, 300)]
    for secret_file in (p["epoch.key"], p["session.json"]):
        assert secret_file.stat().st_mode & 0o777 == 0o600
    crossing = b"".join(p[n].read_bytes() for n in ("tags.bin", "query.bin", "answer.bin"))
    assert b"555" not in crossing and b"h25" not in crossing and b"p25" not in crossing


def test_steps_refuse_missing_secrets_and_foreign_files(files: dict[str, Path], monkeypatch) -> None:
    monkeypatch.delenv("LOYALFED_PSI_SECRET", raising=False)
    p, secret = _steps(files), files["secret"]
    args = ["cache", "build", "--set", str(files["holder"]), "--recipient", "partner", "--at", AT]
    args += ["--epoch", "e", "--out", str(p["tags.bin"])]
    result = RUNNER.invoke(app, [*args, "--key-out", str(p["epoch.key"])])
    assert isinstance(result.exception, ValueError) and "federation matching secret" in str(result.exception)
    RUNNER.invoke(app, [*args, "--key-out", str(p["epoch.key"]), "--secret-file", str(secret)])
    query = ["--tags", str(p["tags.bin"]), "--state", str(p["session.json"]), "--secret-file", str(secret)]
    query += ["--recipient", "holder", "--at", AT]
    RUNNER.invoke(
        app, ["cache", "query", "--set", str(files["partner"]), "--out", str(p["query.bin"]), *query]
    )
    # The holder's own tags file is not a query; a partner set other than the queried one is refused.
    result = RUNNER.invoke(
        app, ["cache", "answer", "--key", str(p["epoch.key"]), "--query", str(p["tags.bin"]), "--out", "x"]
    )
    assert isinstance(result.exception, ValueError) and str(result.exception).startswith(str(p["tags.bin"]))
    RUNNER.invoke(
        app, ["cache", "answer", "--key", str(p["epoch.key"]), "--query", str(p["query.bin"]),
              "--out", str(p["answer.bin"])],
    )  # fmt: skip
    result = RUNNER.invoke(
        app, ["cache", "match", "--set", str(files["holder"]), "--answer", str(p["answer.bin"]), *query]
    )
    assert isinstance(result.exception, ValueError) and "not the member set" in str(result.exception)
    result = RUNNER.invoke(
        app, ["cache", "answer", "--key", str(p["query.bin"]), "--query", str(p["query.bin"]), "--out", "x"]
    )
    assert isinstance(result.exception, ValueError) and "not a loyalfed-psi-cached-set-epoch-key" in str(
        result.exception
    )


def test_help_states_the_key_reuse_trade_off() -> None:
    for command in ("build", "answer"):
        result = RUNNER.invoke(app, ["cache", command, "--help"], terminal_width=200)
        assert result.exit_code == 0 and "joined or left" in " ".join(result.stdout.split())


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    args = ["cache", "answer", "--key", str(tmp_path / "none.key"), "--query", "q", "--out", "a"]
    result = RUNNER.invoke(app, args)
    assert isinstance(result.exception, FileNotFoundError)
    assert result.exception.filename == str(tmp_path / "none.key") and result.exception.strerror
