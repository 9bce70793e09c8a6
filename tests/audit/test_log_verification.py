"""`loyalfed audit verify` detects altering, deleting, reordering or inserting any stored row."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.errors import AuditError
from audit.log_verification import verify_log
from loyalfed.cli.app import app


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    """Run the `loyalfed` Typer app in-process; return (exit code, output + typed error message)."""
    result = CliRunner().invoke(app, args)
    message = str(result.exception) if isinstance(result.exception, AuditError | OSError) else ""
    if result.exception is not None and not message and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output + message


def sql(path: Path, *statements: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement, params if statement.count("?") else ())
    conn.close()


@pytest.fixture
def log_path(make_log: Callable[..., Path]) -> Path:
    return make_log(batches=3)  # 3 × 13 events, 3 signed tree heads


def assert_detected(path: Path, capsys, monkeypatch, expected: str) -> None:
    code, output = run_cli(["audit", "verify", "--db", str(path)], capsys, monkeypatch)
    assert code != 0
    assert "FAILED verification" in output
    assert expected in output, output
    code, output = run_cli(["audit", "verify", "--db", str(path), "--json"], capsys, monkeypatch)
    assert code == 1 and json.loads(output)["ok"] is False


def test_intact_log_verifies(log_path: Path, capsys, monkeypatch) -> None:
    code, output = run_cli(["audit", "verify", "--db", str(log_path), "--json"], capsys, monkeypatch)
    result = json.loads(output)
    assert code == 0 and result["ok"] and result["tree_size"] == 39 and result["tree_heads_checked"] == 3
    assert result["trust_anchor"] == "key file audit.key"
    code, output = run_cli(["audit", "verify", "--db", str(log_path)], capsys, monkeypatch)
    assert code == 0 and "39 entries" in output


def test_altered_entry_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(
        log_path,
        "UPDATE entries SET body = replace(body, '\"epsilon\":0.75', '\"epsilon\":0.01') WHERE seq = 23",
    )
    assert_detected(log_path, capsys, monkeypatch, "entry 23: content does not match its leaf hash")


def test_altered_entry_with_recomputed_leaf_hash_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    conn = sqlite3.connect(log_path)
    body = conn.execute("SELECT body FROM entries WHERE seq = 23").fetchone()[0].replace("0.75", "0.01")
    leaf = hashlib.sha256(b"\x00" + struct.pack(">Q", 23) + body.encode()).digest()
    with conn:
        conn.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 23", (body, leaf))
    conn.close()
    # The pair (22, 23) shares a level-1 node, so the first entry that can be blamed is 22.
    assert_detected(log_path, capsys, monkeypatch, "entry 22: stored subtree (level 1, index 11) is wrong")


def test_deleted_entry_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "DELETE FROM entries WHERE seq = 30")
    assert_detected(log_path, capsys, monkeypatch, "entry 30: entry missing or out of sequence")


def test_deleted_last_entry_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "DELETE FROM entries WHERE seq = 38")
    assert_detected(log_path, capsys, monkeypatch, "entry 38")


def test_reordered_entries_are_detected(log_path: Path, capsys, monkeypatch) -> None:
    conn = sqlite3.connect(log_path)
    (b5, h5), (b6, h6) = conn.execute("SELECT body, leaf_hash FROM entries WHERE seq IN (5, 6) ORDER BY seq")
    with conn:
        conn.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 5", (b6, h6))
        conn.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 6", (b5, h5))
    conn.close()
    assert_detected(log_path, capsys, monkeypatch, "entry 5: content does not match its leaf hash")


def test_inserted_entry_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    conn = sqlite3.connect(log_path)
    body = conn.execute("SELECT body FROM entries WHERE seq = 38").fetchone()[0]
    leaf = hashlib.sha256(b"\x00" + struct.pack(">Q", 39) + body.encode()).digest()
    with conn:
        conn.execute("INSERT INTO entries VALUES (39, ?, ?)", (body, leaf))
    conn.close()
    assert_detected(log_path, capsys, monkeypatch, "entry 39: entry is not covered by any signed tree head")


def test_inserted_entry_before_the_first_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "INSERT INTO entries SELECT -1, body, leaf_hash FROM entries WHERE seq = 0")
    assert_detected(log_path, capsys, monkeypatch, "entry 0: entry missing or out of sequence")


def test_altered_subtree_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "UPDATE nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 3")
    assert_detected(log_path, capsys, monkeypatch, "entry 12: stored subtree (level 2, index 3) is wrong")


def test_deleted_subtree_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "DELETE FROM nodes WHERE level = 1 AND idx = 4")
    assert_detected(log_path, capsys, monkeypatch, "entry 8: stored subtree (level 1, index 4) is missing")


def test_inserted_subtree_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "INSERT INTO nodes VALUES (9, 0, zeroblob(32))")
    assert_detected(log_path, capsys, monkeypatch, "stored subtree(s) beyond the tree")


def test_deleted_latest_tree_head_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "DELETE FROM tree_heads WHERE tree_size = 39")
    assert_detected(log_path, capsys, monkeypatch, "entry 26: entry is not covered by any signed tree head")


def test_deleted_middle_tree_head_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "DELETE FROM tree_heads WHERE tree_size = 26")
    assert_detected(log_path, capsys, monkeypatch, "breaks the chain")


def test_forged_tree_head_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "UPDATE tree_heads SET root_hash = ? WHERE tree_size = 13", params=("00" * 32,))
    assert_detected(log_path, capsys, monkeypatch, "entry 0: bad signature on the head at size 13")


def test_replaced_public_key_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "UPDATE meta SET value = ? WHERE key = 'public_key'", params=("11" * 32,))
    assert_detected(log_path, capsys, monkeypatch, "the recorded public key is not the trusted key")


def test_pinned_key_mismatch_fails(log_path: Path, capsys, monkeypatch) -> None:
    code, output = run_cli(
        ["audit", "verify", "--db", str(log_path), "--public-key", "ab" * 32], capsys, monkeypatch
    )
    assert code != 0 and "public key" in output


def test_missing_log_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    code, output = run_cli(["audit", "verify", "--db", str(tmp_path / "nope.sqlite")], capsys, monkeypatch)
    assert code != 0 and "nope.sqlite" in output


def test_empty_log_verifies(tmp_path: Path) -> None:
    from audit.audit_log import AuditLog

    AuditLog.open(tmp_path / "empty.sqlite").close()
    report = verify_log(tmp_path / "empty.sqlite")
    assert report.ok and report.tree_size == 0


def test_inserted_tree_head_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(
        log_path,
        "INSERT INTO tree_heads SELECT 20, 13, timestamp_ms, root_hash, log_id, signature FROM tree_heads"
        " WHERE tree_size = 26",
    )
    assert_detected(log_path, capsys, monkeypatch, "entry 13: bad signature on the head at size 20")


def test_deleted_public_key_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "DELETE FROM meta WHERE key = 'public_key'")
    assert_detected(log_path, capsys, monkeypatch, "the recorded public key is not the trusted key")


def test_malformed_tree_head_is_a_finding_not_a_crash(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "UPDATE tree_heads SET root_hash = 'not hex' WHERE tree_size = 26")
    assert_detected(log_path, capsys, monkeypatch, "entry 13: malformed head at size 26")


def test_dropped_table_is_a_finding_not_a_crash(log_path: Path, capsys, monkeypatch) -> None:
    sql(log_path, "DROP TABLE nodes")
    assert_detected(log_path, capsys, monkeypatch, "cannot read the log (no such table: nodes)")


def test_deleted_middle_tree_head_with_patched_chain_is_detected(log_path: Path, capsys, monkeypatch) -> None:
    # previous_size is signed, so re-linking the chain around a deleted head breaks a signature.
    sql(
        log_path,
        "DELETE FROM tree_heads WHERE tree_size = 26",
        "UPDATE tree_heads SET previous_size = 13 WHERE tree_size = 39",
    )
    assert_detected(log_path, capsys, monkeypatch, "bad signature on the head at size 39")


def test_log_of_another_format_is_refused(log_path: Path, capsys, monkeypatch) -> None:
    from audit.audit_log import AuditLog
    from audit.errors import LogIntegrityError

    sql(log_path, "UPDATE meta SET value = 'loyalfed-audit/1' WHERE key = 'format'")
    assert_detected(log_path, capsys, monkeypatch, "log format 'loyalfed-audit/1' is not 'loyalfed-audit/2'")
    with pytest.raises(LogIntegrityError, match="this version writes 'loyalfed-audit/2'"):
        AuditLog.open(log_path)
