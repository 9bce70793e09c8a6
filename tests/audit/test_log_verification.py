"""`loyalfed audit verify` and `audit head`: pinned trust, saved heads, clear failures.

The tampering cases themselves are in test_tampering_corpus.py; these tests cover the command line.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.audit_log import AuditLog, default_key_path
from audit.errors import AuditError
from audit.log_verification import verify_log
from audit.tree_head import TreeHeadSigner, load_or_create_signing_key
from loyalfed.cli.app import app


def run_cli(args: list[str]) -> tuple[int, str]:
    """Run the `loyalfed` Typer app in-process; return (exit code, output + typed error message)."""
    result = CliRunner().invoke(app, args)
    message = str(result.exception) if isinstance(result.exception, AuditError | OSError) else ""
    if result.exception is not None and not message and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output + message


@pytest.fixture
def log_path(make_log: Callable[..., Path]) -> Path:
    return make_log(batches=3)  # 3 × 13 events, 3 signed tree heads


def key_hex(path: Path) -> str:
    return TreeHeadSigner(load_or_create_signing_key(default_key_path(path))).public_key_hex


def append_batch(path: Path, flow: Callable, job: str) -> None:
    signer = TreeHeadSigner(load_or_create_signing_key(default_key_path(path)))
    with AuditLog.open(path, signer=signer) as log:
        log.append_batch(flow(job=job))


def test_intact_log_verifies_against_a_pinned_key(log_path: Path) -> None:
    code, output = run_cli(
        ["audit", "verify", "--db", str(log_path), "--public-key", key_hex(log_path), "--json"]
    )
    result = json.loads(output)
    assert code == 0 and result["ok"] and result["tree_size"] == 39 and result["tree_heads_checked"] == 4
    assert result["trust_anchor"] == "pinned public key" and result["pinned"] is True
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--public-key", key_hex(log_path)])
    assert code == 0 and "39 entries" in output and "pinned public key" in output


def test_without_a_pinned_key_verification_fails_closed(log_path: Path) -> None:
    # The key file beside the log is not a trust anchor: whoever rewrites the log can replace it.
    code, output = run_cli(["audit", "verify", "--db", str(log_path)])
    assert code != 0 and "no trusted public key" in output and key_hex(log_path) in output
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--json"])
    result = json.loads(output)
    assert (
        code == 1
        and result["ok"] is False
        and result["pinned"] is False
        and result["first_bad_entry"] is None
    )


def test_the_federation_configuration_pins_the_key(log_path: Path, tmp_path: Path) -> None:
    federation = tmp_path / "federation"
    (federation / "north").mkdir(parents=True)
    manifest = federation / "federation.toml"
    manifest.write_text(f'[[partners]]\nid = "north"\n\n[audit]\npublic_key = "{key_hex(log_path)}"\n')
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--federation", str(federation)])
    assert code == 0, output
    manifest.write_text(f'[[partners]]\nid = "north"\n\n[audit]\npublic_key = "{"ab" * 32}"\n')
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--federation", str(federation)])
    assert code != 0 and "the recorded public key is not the trusted key" in output
    manifest.write_text('[[partners]]\nid = "north"\n')
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--federation", str(federation)])
    assert code != 0 and "has no [audit] public_key" in output


def test_pinned_key_mismatch_fails(log_path: Path) -> None:
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--public-key", "ab" * 32])
    assert code != 0 and "the recorded public key is not the trusted key" in output
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--public-key", "xyz"])
    assert code != 0 and "not a 32-byte Ed25519 key in hex" in output


def test_since_head_passes_on_growth_and_fails_on_truncation_and_an_older_copy(
    log_path: Path, tmp_path: Path, flow: Callable
) -> None:
    older = tmp_path / "backup.sqlite"
    shutil.copy(log_path, older)
    append_batch(log_path, flow, "job-later")
    code, output = run_cli(["audit", "head", "--db", str(log_path), "--json"])
    head = tmp_path / "head.json"
    head.write_text(output)
    assert code == 0 and json.loads(output)["tree_head"]["tree_size"] == 52
    append_batch(log_path, flow, "job-even-later")
    verify = ["audit", "verify", "--db", str(log_path), "--since-head", str(head)]
    code, output = run_cli([*verify, "--json"])
    result = json.loads(output)
    assert code == 0 and result["ok"] and result["since_size"] == 52 and result["tree_size"] == 65
    assert result["trust_anchor"] == "public key saved with the tree head at size 52"

    shutil.copy(log_path, tmp_path / "current.sqlite")
    conn = sqlite3.connect(log_path)  # truncate back to the signed head at size 26
    with conn:
        conn.execute("DELETE FROM entries WHERE seq >= 26")
        conn.execute("DELETE FROM nodes WHERE ((idx + 1) << level) > 26")
        conn.execute("DELETE FROM tree_heads WHERE tree_size > 26")
    conn.close()
    assert verify_log(
        log_path, public_key=load_or_create_signing_key(default_key_path(log_path)).public_key()
    ).ok
    code, output = run_cli(verify)
    assert code != 0 and "entries 26-51: the saved head covers 52 entries but the log has 26" in output
    code, output = run_cli([*verify, "--json"])
    assert json.loads(output)["bad_entries"] == [26, 51] and json.loads(output)["first_bad_entry"] is None

    shutil.copy(older, log_path)  # an older copy restored in place of the log
    code, output = run_cli([*verify, "--json"])
    result = json.loads(output)
    assert code == 1 and result["bad_entries"] == [39, 51] and "older copy" in result["first_problem"]


def test_saved_head_that_is_not_one_is_a_clear_error(log_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "head.json"
    bad.write_text('{"tree_head": {}}')
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--since-head", str(bad)])
    assert code != 0 and "head.json: not a saved tree head" in output
    code, output = run_cli(["audit", "head", "--db", str(log_path), "--json"])
    forged = json.loads(output)
    forged["frontier"][0] = "00" * 32
    bad.write_text(json.dumps(forged))
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--since-head", str(bad)])
    assert code != 0 and "frontier does not fold to the signed root hash" in output


def test_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    code, output = run_cli(["audit", "verify", "--db", str(tmp_path / "nope.sqlite")])
    assert code != 0 and "nope.sqlite" in output


def test_empty_log_verifies(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "empty.sqlite") as log:
        key = log.public_key
    report = verify_log(tmp_path / "empty.sqlite", public_key=key)
    assert report.ok and report.tree_size == 0 and report.tree_heads == 1  # the signed empty tree
    code, output = run_cli(["audit", "head", "--db", str(tmp_path / "empty.sqlite")])
    assert code == 0 and json.loads(output)["tree_head"]["tree_size"] == 0


def test_log_of_another_format_is_refused(log_path: Path) -> None:
    from audit.errors import LogIntegrityError

    conn = sqlite3.connect(log_path)
    with conn:
        conn.execute("UPDATE meta SET value = 'loyalfed-audit/1' WHERE key = 'format'")
    conn.close()
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--public-key", key_hex(log_path)])
    assert code != 0 and "log format 'loyalfed-audit/1' is not 'loyalfed-audit/2'" in output
    with pytest.raises(LogIntegrityError, match="this version writes 'loyalfed-audit/2'"):
        AuditLog.open(log_path)
