"""One test per kind of broken input: the real `loyalfed data validate` names file, row and column."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from partner_folder import CONSENTS, MEMBERS, TRANSACTIONS, replace_line, write_partner
from typer.testing import CliRunner

from loyalfed.cli.app import app

runner = CliRunner()


def validate(folder: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["data", "validate", str(folder)], terminal_width=200)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


def test_valid_folder_exits_zero(tmp_path: Path) -> None:
    code, out = validate(write_partner(tmp_path / "p"))
    assert code == 0
    assert "members.csv" in out and "ok" in out


def test_missing_column(tmp_path: Path) -> None:
    broken = TRANSACTIONS.replace(",amount,", ",amt,")
    code, out = validate(write_partner(tmp_path / "p", transactions_csv=broken))
    assert code == 2
    assert "transactions.csv, line 1, column 'amount': missing required column" in out


def test_wrong_type(tmp_path: Path) -> None:
    broken = replace_line(MEMBERS, 3, "M-002,+8613800000002,,2016-02-10,forty,")
    code, out = validate(write_partner(tmp_path / "p", members_csv=broken))
    assert code == 1
    assert "members.csv, line 3, column 'points_balance': wrong type: not an integer (first: 'forty')" in out


def test_wrong_type_in_parquet_column_is_fatal(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    frame = pd.read_csv(folder / "transactions.csv").assign(amount=True)
    (folder / "transactions.csv").unlink()
    frame.to_parquet(folder / "transactions.parquet")
    code, out = validate(folder)
    assert code == 2
    assert "transactions.parquet, column 'amount': wrong type: stored as bool" in out


def test_unparsable_timestamp(tmp_path: Path) -> None:
    broken = replace_line(TRANSACTIONS, 4, "M-002,2017-02-30 18:15,30.10,3,S2,GROCERY,1.2")
    code, out = validate(write_partner(tmp_path / "p", transactions_csv=broken))
    assert code == 1
    assert (
        "transactions.csv, line 4, column 'timestamp': unparsable timestamp (first: '2017-02-30 18:15')"
        in out
    )
    assert "1 row(s) unusable" in out


def test_refund_beyond_the_members_purchases_is_a_warning(tmp_path: Path) -> None:
    broken = replace_line(TRANSACTIONS, 2, "M-001,2017-01-02T10:00:00,-12.50,1,S1,GROCERY,0.5")
    code, out = validate(write_partner(tmp_path / "p", transactions_csv=broken))
    assert code == 0  # usable rows: a warning does not change the exit code
    assert (
        "transactions.csv, line 2, column 'amount': refunds exceed the member's purchases in this file "
        "(1 member(s)) — 1 row(s)"
    ) in out


def test_non_numeric_amount(tmp_path: Path) -> None:
    broken = replace_line(TRANSACTIONS, 5, 'M-003,2017-02-01T08:00:00,"12,50",1,S2,MEAT,0')
    code, out = validate(write_partner(tmp_path / "p", transactions_csv=broken))
    assert code == 1
    assert "transactions.csv, line 5, column 'amount': not a number (first: '12,50')" in out


def test_duplicate_member_id_never_quotes_the_id(tmp_path: Path) -> None:
    broken = replace_line(MEMBERS, 4, "M-001,,c@example.com,2016-03-15,0,45-54")
    code, out = validate(write_partner(tmp_path / "p", members_csv=broken))
    assert code == 1
    assert "members.csv, lines 2, 4, column 'member_id': duplicate member_id" in out
    assert "M-001" not in out


def test_transaction_of_unknown_member(tmp_path: Path) -> None:
    broken = replace_line(TRANSACTIONS, 3, "M-999,2017-01-09T11:00:00,8.00,2,S1,PRODUCE,0")
    code, out = validate(write_partner(tmp_path / "p", transactions_csv=broken))
    assert code == 1
    assert "transactions.csv, line 3, column 'member_id': unknown member" in out
    assert "M-999" not in out


def test_consent_of_unknown_member(tmp_path: Path) -> None:
    broken = replace_line(CONSENTS, 4, "X-3,analytics.propensity_model,2016-03-15,,consent,own,true")
    code, out = validate(write_partner(tmp_path / "p", consents_csv=broken))
    assert code == 1
    assert "consents.csv, line 4, column 'member_id': unknown member" in out


def test_unknown_purpose(tmp_path: Path) -> None:
    broken = replace_line(CONSENTS, 2, "M-001,analytics.churn,2016-01-05,,consent,own,false")
    code, out = validate(write_partner(tmp_path / "p", consents_csv=broken))
    assert code == 1
    assert "consents.csv, line 2, column 'purpose': unknown purpose (first: 'analytics.churn')" in out
    assert "analytics.churn_model" in out  # the known purposes are listed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "consents.csv, line 1: empty file"),
        ("member_id,purpose,granted_at\n", "consents.csv, line 2: empty file: a header but no data rows"),
    ],
)
def test_empty_file(tmp_path: Path, text: str, expected: str) -> None:
    code, out = validate(write_partner(tmp_path / "p", consents_csv=text))
    assert code == 2
    assert expected in out


def test_non_utf8_file(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    latin1 = replace_line(TRANSACTIONS, 4, "M-002,2017-01-03T18:15:00,30.10,3,S2,CAFÉ,1.2").encode("latin-1")
    (folder / "transactions.csv").write_bytes(latin1)
    code, out = validate(folder)
    assert code == 2
    assert "transactions.csv, line 4, column 'category': not valid UTF-8 (byte 0xc9" in out


def test_missing_required_file(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    (folder / "consents.csv").unlink()
    code, out = validate(folder)
    assert code == 2
    assert "missing required file 'consents'" in out


def test_malformed_csv_line(tmp_path: Path) -> None:
    broken = replace_line(TRANSACTIONS, 3, "M-001,2017-01-09T11:00:00,8.00,2,S1,PRODUCE,0,extra")
    code, out = validate(write_partner(tmp_path / "p", transactions_csv=broken))
    assert code == 2
    assert "transactions.csv, line 3: not a well-formed CSV file" in out


def test_federation_json_report_counts_every_unusable_row(tmp_path: Path) -> None:
    write_partner(tmp_path / "fed" / "good")
    broken = replace_line(TRANSACTIONS, 2, "M-001,yesterday,one,1,S1,GROCERY,0.5")
    write_partner(tmp_path / "fed" / "bad", transactions_csv=broken)
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "fed"), "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["exit_code"] == 1
    by_partner = {p["partner"]: p for p in report["partners"]}
    assert by_partner["good"]["ok"] is True
    transactions = next(f for f in by_partner["bad"]["files"] if f["kind"] == "transactions")
    assert (transactions["rows_read"], transactions["rows_usable"]) == (4, 3)
    reasons = {(p["column"], p["lines"][0]) for p in transactions["problems"]}
    assert reasons == {("timestamp", 2), ("amount", 2)}


def test_folder_that_does_not_exist(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "nowhere: not a federation folder (no such directory)" in " ".join(result.output.split())


def test_installed_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p", members_csv=MEMBERS.replace("joined_at", "joined"))
    done = subprocess.run(
        [sys.executable, "-c", "from loyalfed.cli import main; main()", "data", "validate", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "members.csv, line 1, column 'joined_at': missing required column" in " ".join(done.stdout.split())
    assert "Traceback" not in done.stderr


def test_duplicate_column_in_header(tmp_path: Path) -> None:
    broken = TRANSACTIONS.replace("category,discount", "category,amount")
    code, out = validate(write_partner(tmp_path / "p", transactions_csv=broken))
    assert code == 2
    assert "transactions.csv, line 1, column 'amount': duplicate column in the header" in out
