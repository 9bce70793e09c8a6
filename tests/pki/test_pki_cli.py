"""`loyalfed pki …` end to end: three organisations' keys stay in their own folders."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from loyalfed.cli.pki_commands import pki as app

RUNNER = CliRunner()


def _ok(args: list[str]) -> dict[str, object]:
    result = RUNNER.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_each_organisation_keeps_its_key_and_sends_only_a_request(tmp_path: Path) -> None:
    _ok(["init-ca", "--out", str(tmp_path / "ca-host")])
    for partner in ("freshmart", "careplus"):
        made = _ok(
            [
                "request",
                "--role",
                "node",
                "--partner",
                partner,
                "--host",
                f"{partner}.example",
                "--out",
                str(tmp_path / partner),
            ]
        )
        assert Path(str(made["private_key"])).parent == tmp_path / partner
        signed = _ok(
            [
                "sign",
                str(made["request"]),
                "--ca",
                str(tmp_path / "ca-host"),
                "--role",
                "node",
                "--partner",
                partner,
                "--out",
                str(tmp_path / partner / f"{partner}.pem"),
            ]
        )
        assert signed["partner"] == partner and signed["hosts"] == [f"{partner}.example"]
    keys = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.key"))
    assert keys == ["ca-host/ca.key", "careplus/careplus.key", "freshmart/freshmart.key"]
    shown = _ok(["show", str(tmp_path / "careplus" / "careplus.pem")])
    assert shown["kind"] == "certificate" and shown["partner"] == "careplus"


def test_a_mismatched_partner_is_refused_with_the_file_named(tmp_path: Path) -> None:
    _ok(["init-ca", "--out", str(tmp_path / "ca")])
    made = _ok(["request", "--role", "node", "--partner", "careplus", "--out", str(tmp_path / "careplus")])
    result = RUNNER.invoke(
        app,
        [
            "sign",
            str(made["request"]),
            "--ca",
            str(tmp_path / "ca"),
            "--role",
            "node",
            "--partner",
            "freshmart",
            "--out",
            str(tmp_path / "x.pem"),
        ],
    )
    assert result.exit_code != 0
    assert "careplus.csr" in str(result.exception) and not (tmp_path / "x.pem").exists()
