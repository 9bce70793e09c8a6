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
    # (and the CLI audit log's signing key, in the data directory: each step appended an event)
    assert keys == [
        "ca-host/ca.key",
        "careplus/careplus.key",
        "freshmart/freshmart.key",
        "loyalfed-state/audit.key",
    ]
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


def test_every_key_and_certificate_made_appends_an_event_naming_only_public_halves(tmp_path: Path) -> None:
    import hashlib

    from audit.audit_log import AuditLog
    from audit.lineage_event import EventType
    from loyalfed.cli.officer_commands import officer

    _ok(["init-ca", "--out", str(tmp_path / "ca-host")])
    made = _ok(["request", "--role", "node", "--partner", "careplus", "--out", str(tmp_path / "careplus")])
    pem = tmp_path / "careplus" / "careplus.pem"
    _ok(["sign", str(made["request"]), "--ca", str(tmp_path / "ca-host"), "--role", "node",
         "--partner", "careplus", "--out", str(pem)])  # fmt: skip
    _ok(["supernode-key", "--out", str(tmp_path / "careplus" / "supernode")])
    assert RUNNER.invoke(officer, ["keygen", "--out", str(tmp_path / "officer"), "--json"]).exit_code == 0

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    with AuditLog.open(tmp_path / "loyalfed-state" / "audit.sqlite") as log:  # tests/conftest.py's
        events = [event for _, event in log.iter_events()]
    assert [
        (e.event_type, e.role, e.details.get("key_use") or e.details.get("certificate_role")) for e in events
    ] == [
        (EventType.KEY_CREATED, "federation_operator", "federation_ca"),
        (EventType.KEY_CREATED, "partner_operator", "node"),
        (EventType.CERTIFICATE_ISSUED, "federation_operator", "node"),
        (EventType.KEY_CREATED, "partner_operator", "supernode"),
        (EventType.KEY_CREATED, "data_officer", "officer_signing"),
    ]
    assert events[1].partner == events[2].partner == "careplus"
    outputs = [{o.name: o.sha256 for o in e.outputs} for e in events]
    assert outputs[0] == {"ca certificate": sha(tmp_path / "ca-host" / "ca.crt")}
    assert outputs[2] == {"certificate request": sha(Path(str(made["request"]))), "certificate": sha(pem)}
    assert outputs[3] == {"supernode public key": sha(tmp_path / "careplus" / "supernode" / "supernode.pub")}
    assert outputs[4] == {"officer public key": sha(tmp_path / "officer" / "officer.pub")}
    # No private key, nor its hash, is in any event.
    private = {sha(p) for p in tmp_path.rglob("*.key")} | {
        sha(p) for p in tmp_path.rglob("supernode") if p.is_file()
    }
    body = b"".join(e.canonical_bytes() for e in events)
    assert private and not [h for h in private if h.encode() in body]
