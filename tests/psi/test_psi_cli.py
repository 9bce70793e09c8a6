"""`loyalfed psi run` and `loyalfed psi bench` end to end (real files, real subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

from psi_partner_folders import AT as CONSENT_AT
from psi_partner_folders import write_matching_partner
from typer.testing import CliRunner

# The psi sub-app alone: the root app would import every other command group (Flower, torch).
from loyalfed.cli.psi_commands import psi as app

RUNNER = CliRunner()


def _files(tmp_path: Path) -> tuple[Path, Path]:
    a_members = [(f"a{i}", f"+1 415 555 {i:04d}", "") for i in range(60)]
    a_members += [("a-bad", "not a phone", ""), ("a-dup", "(415) 555-0001", "")]
    b_members = [(f"b{i}", f"415555{i:04d}", str(i)) for i in range(40, 100)]
    a = write_matching_partner(tmp_path / "freshmart", a_members)
    b = write_matching_partner(tmp_path / "fuelgo", b_members, value_column="points_balance")
    return a, b


AT = ["--at", CONSENT_AT]


def test_psi_run_reports_what_each_side_learns(tmp_path: Path) -> None:
    a, b = _files(tmp_path)
    out = tmp_path / "matches.csv"
    result = RUNNER.invoke(app, ["run", "--a", str(a), "--b", str(b), *AT, "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["a_learns"]["cardinality"] == 20 and report["b_learns"]["cardinality"] is None
    assert report["unusable_rows"]["a"] == {"malformed": 1, "empty": 0, "duplicates": 1}
    assert out.read_text().splitlines() == ["member_id"] + [f"a{i}" for i in range(40, 60)]
    assert "+1415" not in result.stdout
    assert report["consent"]["a"] == {
        "matched_over": 62,
        "excluded_by_consent": 0,
        "excluded_by_retention": 0,
    }


def test_psi_run_sum_mode_gives_b_the_sum(tmp_path: Path) -> None:
    a, b = _files(tmp_path)
    args = ["run", "--a", str(a), "--b", str(b), *AT, "--mode", "sum", "--value-column", "points_balance"]
    result = RUNNER.invoke(app, [*args, "--paillier-bits", "1024", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["b_learns"]["intersection_sum"] == sum(range(40, 60))
    assert report["a_learns"]["cardinality"] == 20


def test_psi_bench_small_is_correct_against_sets_and_openmined() -> None:
    result = RUNNER.invoke(app, ["bench", "--size", "300", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["results"][0]
    assert row["loyalfed"]["correct_vs_plain_sets"] and row["openmined"]["correct_vs_plain_sets"]
    assert row["agree_with_openmined"] and row["loyalfed"]["matches"] == 150
    assert row["loyalfed"]["bytes_per_element_to_responder"] < 33


def test_psi_bench_prints_its_table(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["bench", "--size", "200", "--no-openmined"])
    assert result.exit_code == 0, result.output
    assert "PSI benchmark" in result.stdout and "loyalfed" in result.stdout
