"""Values a reader must survive: out-of-range dates, integers beyond 64 bits, nested Parquet columns,
future dates and implausible amounts. Each is counted (unusable rows or warnings) with file, row
and column, through the real `loyalfed data validate` and `load_partner`."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from partner_folder import MEMBERS, TRANSACTIONS, replace_line, write_partner
from typer.testing import CliRunner

from loyalfed.cli.app import app
from participant_node.data import FileKind, load_partner, validate_partner

runner = CliRunner()
NOW = datetime(2024, 6, 1)


def validate(folder: Path) -> tuple[int, str, dict[str, Any]]:
    text = runner.invoke(app, ["data", "validate", str(folder)], terminal_width=300)
    as_json = runner.invoke(app, ["data", "validate", str(folder), "--json"])
    assert as_json.exception is None or isinstance(as_json.exception, SystemExit), as_json.exception
    return text.exit_code, " ".join(text.output.split()), json.loads(as_json.stdout)


def _to_parquet(folder: Path, name: str, table: pa.Table) -> None:
    (folder / f"{name}.csv").unlink()
    pq.write_table(table, folder / f"{name}.parquet")


def _transactions_table(folder: Path, **columns: pa.Array) -> pa.Table:
    frame = pd.read_csv(folder / "transactions.csv", dtype=str)
    table = pa.table({"member_id": frame["member_id"], "amount": frame["amount"].astype(float)})
    table = table.append_column("timestamp", pa.array(pd.to_datetime(frame["timestamp"]), pa.timestamp("us")))
    for name, array in columns.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


def test_out_of_range_timestamps_are_unusable_rows(tmp_path: Path) -> None:
    text = TRANSACTIONS
    for line, year in ((2, "0001-01-01"), (3, "2300-05-01T10:00:00"), (5, "9999-12-31T23:59:59")):
        fields = text.splitlines()[line - 1].split(",")
        text = replace_line(text, line, ",".join([fields[0], year, *fields[2:]]))
    code, out, report = validate(write_partner(tmp_path / "p", transactions_csv=text))
    assert code == 1
    assert (
        "transactions.csv, lines 2, 3, 5, column 'timestamp': timestamp out of range (first: '0001-01-01'): "
        "supported years 1900 to 2199 — 3 row(s) unusable"
    ) in out
    transactions = next(f for f in report["partners"][0]["files"] if f["kind"] == "transactions")
    assert (transactions["rows_read"], transactions["rows_usable"]) == (4, 1)


def test_out_of_range_parquet_timestamps_and_dates(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    stamps = pa.array([datetime(2017, 1, 2), datetime(9999, 12, 31), datetime(2017, 1, 3), datetime(1, 1, 1)])
    _to_parquet(
        folder, "transactions", _transactions_table(folder, timestamp=stamps.cast(pa.timestamp("us")))
    )
    frame = pd.read_csv(folder / "members.csv", dtype=str)
    joined = pa.array([date(2016, 1, 5), date(1, 1, 1), date(2016, 3, 15)], pa.date32())
    members = pa.table(
        {
            "member_id": frame["member_id"],
            "phone": frame["phone"],
            "email": frame["email"],
            "joined_at": joined,
        }
    )
    _to_parquet(folder, "members", members)
    data = load_partner(folder, now=NOW)
    problem = data.report.files[FileKind.TRANSACTIONS].problems[0]
    assert str(problem).startswith(
        "transactions.parquet, rows 2, 4, column 'timestamp': timestamp out of range"
    )
    (problem,) = data.report.files[FileKind.MEMBERS].problems
    assert str(problem).startswith("members.parquet, row 2, column 'joined_at': timestamp out of range")
    assert data.members["joined_at"].dtype == "datetime64[ns]" and len(data.members) == 2


def test_integers_beyond_64_bits_are_unusable_rows(tmp_path: Path) -> None:
    broken = replace_line(MEMBERS, 3, "M-002,+8613800000002,,2016-02-10,99999999999999999999999,")
    code, out, _ = validate(write_partner(tmp_path / "p", members_csv=broken))
    assert code == 1
    assert (
        "members.csv, line 3, column 'points_balance': integer out of range "
        "(first: '99999999999999999999999'): beyond 64 bits"
    ) in out


def test_integers_beyond_64_bits_in_parquet(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    frame = pd.read_csv(folder / "members.csv", dtype=str)
    members = pa.table(
        {
            # An unsigned 64-bit id is fine as text; a points balance of 2^64 - 1 does not fit Int64.
            "member_id": pa.array([1, 2, 2**64 - 1], pa.uint64()),
            "phone": frame["phone"],
            "email": frame["email"],
            "joined_at": pa.array(pd.to_datetime(frame["joined_at"], format="ISO8601", utc=True)),
            "points_balance": pa.array([5, 2**64 - 1, 7], pa.uint64()),
        }
    )
    _to_parquet(folder, "members", members)
    (folder / "transactions.csv").write_text("member_id,timestamp,amount\n1,2017-01-02,1.0\n")
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at\n18446744073709551615,analytics.churn_model,2016-01-05\n"
    )
    (folder / "campaigns.csv").unlink()
    data = load_partner(folder, now=NOW)
    (problem,) = data.report.files[FileKind.MEMBERS].problems
    assert str(problem).startswith("members.parquet, row 2, column 'points_balance': integer out of range")
    assert data.members["member_id"].tolist() == ["1", "18446744073709551615"]
    assert data.members["points_balance"].tolist() == [5, 7]
    assert data.report.files[FileKind.CONSENTS].rows_usable == 1


def test_nested_optional_column_is_skipped_and_named(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    nested = pa.array([["a"], ["b", "c"], [], None], pa.list_(pa.string()))
    extra = pa.array([{"x": 1}, {"x": 2}, None, {"x": 4}], pa.struct([("x", pa.int64())]))
    _to_parquet(folder, "transactions", _transactions_table(folder, category=nested, loyalty_meta=extra))
    code, out, report = validate(folder)
    assert code == 0
    assert (
        "transactions.parquet, column 'category': "
        "unsupported nested Parquet type list<element: string>: column skipped"
    ) in out
    assert "ignored columns loyalty_meta" in out
    transactions = next(f for f in report["partners"][0]["files"] if f["kind"] == "transactions")
    assert transactions["rows_usable"] == 4 and "category" in transactions["skipped_columns"]


def test_nested_required_column_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    nested = pa.array([[1.0], [2.0], [3.0], [4.0]], pa.list_(pa.float64()))
    _to_parquet(folder, "transactions", _transactions_table(folder, amount=nested))
    code, out, _ = validate(folder)
    assert code == 2
    assert (
        "transactions.parquet, schema, column 'amount': unsupported nested Parquet type list<element: double>"
        in out
    )


def test_future_dated_transactions_are_warnings_with_counts(tmp_path: Path) -> None:
    text = replace_line(TRANSACTIONS, 3, "M-001,2999-01-09T11:00:00,8.00,2,S1,PRODUCE,0")
    text = replace_line(text, 5, "M-003,2199-02-01T08:00:00,0,1,S2,MEAT,0")
    report = validate_partner(write_partner(tmp_path / "p", transactions_csv=text), now=NOW)
    (warning,) = report.files[FileKind.TRANSACTIONS].warnings
    assert (warning.column, warning.count, warning.rows) == ("timestamp", 1, (5,))
    assert str(warning).startswith("transactions.csv, line 5, column 'timestamp': dated in the future")
    (problem,) = report.files[FileKind.TRANSACTIONS].problems  # 2999 is out of range, not a warning
    assert problem.rows == (3,) and report.files[FileKind.TRANSACTIONS].rows_usable == 3


def test_implausible_amounts_are_warnings_with_counts(tmp_path: Path) -> None:
    lines = [f"M-00{1 + n % 3},2017-01-{1 + n % 28:02d}T10:00:00,{5 + n % 40}.50" for n in range(40)]
    lines[6] = "M-001,2017-01-07T10:00:00,1e308"
    lines[30] = "M-002,2017-01-03T10:00:00,950000"  # > 10,000 x the median basket (~25)
    lines[31] = "M-003,2017-01-04T10:00:00,-3.00"  # a refund within the member's purchases: fine
    text = "member_id,timestamp,amount\n" + "\n".join(lines) + "\n"
    code, out, report = validate(write_partner(tmp_path / "p", transactions_csv=text))
    assert code == 0
    assert "transactions.csv, lines 8, 32, column 'amount': implausibly large amount" in out
    transactions = next(f for f in report["partners"][0]["files"] if f["kind"] == "transactions")
    assert [(w["column"], w["count"]) for w in transactions["warnings"]] == [("amount", 2)]
    assert report["partners"][0]["warnings"] == 2


def test_huge_amount_in_a_tiny_file_is_still_a_warning(tmp_path: Path) -> None:
    text = replace_line(TRANSACTIONS, 4, "M-002,2017-01-03T18:15:00,1e308,3,S2,GROCERY,1.2")
    report = validate_partner(write_partner(tmp_path / "p", transactions_csv=text), now=NOW)
    (warning,) = report.files[FileKind.TRANSACTIONS].warnings
    assert (warning.rows, warning.count) == ((4,), 1)


def test_validation_reads_in_chunks_with_the_same_answer(tmp_path: Path, monkeypatch: Any) -> None:
    from participant_node.data import table_reader

    rows = [f"M-00{1 + n % 3},2017-01-02T10:00:00,{n}.25,1,S1,GROCERY,0" for n in range(3000)]
    rows[2500] = "M-001,not-a-date,1,1,S1,GROCERY,0"
    text = "member_id,timestamp,amount,quantity,store_id,category,discount\n" + "\n".join(rows) + "\n"
    folder = write_partner(tmp_path / "p", transactions_csv=text)
    whole = load_partner(folder, now=NOW)
    monkeypatch.setattr(table_reader, "CSV_BLOCK_BYTES", 4096)  # ~70 chunks
    chunked = load_partner(folder, now=NOW)
    assert chunked.report.to_dict() == whole.report.to_dict()
    assert chunked.transactions.equals(whole.transactions)
    (problem,) = chunked.report.files[FileKind.TRANSACTIONS].problems
    assert problem.rows == (2502,)
