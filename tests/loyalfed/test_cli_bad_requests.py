"""Requests naming what does not exist are errors, and CSV outputs cannot carry spreadsheet formulas.

Each test runs the real console entry point (``loyalfed.cli.main``) in-process: a non-zero exit
and one clear line on stderr, never a traceback, and nothing recorded.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from audit import AuditLog
from audit.lineage_event import EventType
from loyalfed.cli import main
from loyalfed.cli.csv_output import escape_cell, write_csv
from participant_node.consent import store_path


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["loyalfed", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOYALFED_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "400")  # Rich wraps stderr at the terminal width
    return tmp_path / "state"


def _partner(root: Path, name: str = "freshmart-north", ids: tuple[str, ...] = ("m1", "m2", "m3")) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "members.csv").write_text(
        "member_id,phone,joined_at\n"
        + "".join(f"{m},+861380000000{n},2020-01-01\n" for n, m in enumerate(ids))
    )
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount\n" + "".join(f"{m},2024-01-01T10:00:00,2.5\n" for m in ids)
    )
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at\n" + "".join(f"{m},analytics.churn_model,2024-01-01\n" for m in ids)
    )
    return folder


def test_erase_of_an_unknown_member_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _partner(tmp_path)
    code, out, err = run_cli(["consent", "erase", str(folder), "--member", "TYPO"], capsys, monkeypatch)
    assert code != 0 and out == ""
    assert err.strip().count("\n") == 0 and "no member with the given id" in err
    assert "Traceback" not in err
    with sqlite3.connect(store_path(folder)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM erasure_requests").fetchone() == (0,)


def test_withdraw_of_an_unknown_member_fails_and_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _partner(tmp_path)
    args = ["consent", "withdraw", str(folder), "--member", "m1", "--member", "nobody"]
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code != 0 and "1 of 2 member id(s) are not members" in " ".join(err.split())
    with sqlite3.connect(store_path(folder)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM consent_records").fetchone() == (0,)


def test_erasure_request_is_in_the_audit_log_with_its_deadlines(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _partner(tmp_path)
    args = ["consent", "erase", str(folder), "--member", "m2", "--received-at", "2024-05-31T10:00:00"]
    code, out, _ = run_cli([*args, "--promise", "7 working days", "--json"], capsys, monkeypatch)
    assert code == 0
    receipt = json.loads(out)
    assert receipt["deadline"].startswith("2024-06-11") and receipt["deadline_rule"] == "programme.promise"
    with AuditLog.open(data_dir / "audit.sqlite") as log:
        ((_, event),) = list(log.iter_events())
    assert event.event_type is EventType.CONSENT_ERASED and event.partner == "freshmart-north"
    assert event.details["deadline_rule"] == "programme.promise"
    assert event.details["deadline_epoch_s"] == 1718100000  # 2024-06-11T10:00Z
    assert event.details["legal_rule"] == "pipl.art47.gbt35273"
    assert event.details["legal_deadline_epoch_s"] == 1719741600  # 2024-06-30T10:00Z (30 days)
    assert event.details["rows_deleted.transactions"] == 1
    assert b"m2" not in (data_dir / "audit.sqlite").read_bytes()


def test_budget_cap_for_an_unknown_partner_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _partner(tmp_path / "fed")
    args = [
        "budget",
        "set-cap",
        "--partner",
        "nobody",
        "--epsilon",
        "5",
        "--federation",
        str(tmp_path / "fed"),
    ]
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and "unknown partner 'nobody'" in err and "freshmart-north" in err
    assert not (tmp_path / "fed" / ".coordinator").exists()


def test_budget_ledger_is_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _partner(tmp_path / "fed")
    fed = str(tmp_path / "fed")
    code, _, _ = run_cli(
        ["budget", "set-cap", "--partner", "freshmart-north", "--epsilon", "5", "--federation", fed],
        capsys,
        monkeypatch,
    )
    assert code == 0
    state = tmp_path / "fed" / ".coordinator"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "budget_ledger.sqlite").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+8613800000001", "'+8613800000001"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("FM-0001", "FM-0001"),
        (-0.25, "-0.25"),
        (3, "3"),
        (None, ""),
    ],
)
def test_escape_cell(cell: object, written: str) -> None:
    assert escape_cell(cell) == written


def test_write_csv_quotes_and_escapes(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_csv(path, ["member_id", "note"], [['=HYPERLINK("http://x")', "a,b"], ["m1", 'say "hi"']])
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows == [["member_id", "note"], ['\'=HYPERLINK("http://x")', "a,b"], ["m1", 'say "hi"']]


def _matching_partner(folder: Path, rows: list[str]) -> Path:
    folder.mkdir()
    ids = [next(csv.reader([row]))[0] for row in rows]
    (folder / "members.csv").write_text(
        "member_id,phone,joined_at\n" + "".join(f"{r},2024-01-01\n" for r in rows)
    )
    quoted = ['"' + i.replace('"', '""') + '"' for i in ids]
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount\n" + "".join(f"{q},2024-05-01T10:00:00,1.00\n" for q in quoted)
    )
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at,scope\n"
        + "".join(f"{q},marketing.cross_brand_matching,2024-01-01,federation\n" for q in quoted)
    )
    return folder


def test_psi_run_out_escapes_formula_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # PSI matches partner folders' consented members (the node gate); every member here consented.
    a = _matching_partner(tmp_path / "a", ["\"=cmd|' /C calc'!A0\",+8613800000001", "m2,+8613800000002"])
    b = _matching_partner(tmp_path / "b", ["x1,+8613800000001", "x2,+8613800000009"])
    out = tmp_path / "matches.csv"
    args = ["psi", "run", "--a", str(a), "--b", str(b), "--at", "2024-06-01", "--out", str(out), "--json"]
    code, _, _ = run_cli([*args, "--default-region", "CN"], capsys, monkeypatch)
    assert code == 0
    assert list(csv.reader(out.open(encoding="utf-8"))) == [["member_id"], ["'=cmd|' /C calc'!A0"]]
