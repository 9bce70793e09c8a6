"""`load_partner` and `load_federation`: typed frames, reported unusable rows, federation.toml."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from partner_folder import MEMBERS, TRANSACTIONS, replace_line, write_partner

from participant_node.data import (
    CONTRACT,
    DataContractError,
    FileKind,
    PartnerKind,
    fingerprint_partner,
    load_federation,
    load_partner,
)

STR = pd.Series(["x"]).dtype  # pandas 3's default string dtype


def test_frames_are_typed_and_carry_every_contract_column(tmp_path: Path) -> None:
    data = load_partner(write_partner(tmp_path / "p"))
    assert data.report.ok
    for kind in FileKind:
        frame = data.frame(kind)
        assert frame is not None and list(frame.columns) == list(CONTRACT[kind].names)
    assert data.members["member_id"].dtype == STR
    assert data.members["joined_at"].dtype == "datetime64[ns]"
    assert data.members["points_balance"].dtype == "Int64"
    assert data.members["gender"].isna().all()  # optional column absent from the file
    assert data.transactions["amount"].dtype == "float64"
    assert data.consents["cross_border"].dtype == "boolean"
    assert data.consents["cross_border"].tolist() == [False, False, True]


def test_offsets_are_converted_to_utc_naive(tmp_path: Path) -> None:
    data = load_partner(write_partner(tmp_path / "p"))
    joined = data.members.set_index("member_id")["joined_at"]
    assert joined["M-003"] == pd.Timestamp("2016-03-15 04:00:00")  # 12:00 at +08:00
    assert joined["M-002"] == pd.Timestamp("2016-02-10 09:30:00")


def test_unusable_rows_are_left_out_and_counted(tmp_path: Path) -> None:
    broken = replace_line(TRANSACTIONS, 3, "M-001,not-a-date,8.00,2,S1,PRODUCE,0")
    data = load_partner(write_partner(tmp_path / "p", transactions_csv=broken))
    report = data.report.files[FileKind.TRANSACTIONS]
    assert (report.rows_read, report.rows_usable, len(data.transactions)) == (4, 3, 3)
    assert not data.report.ok and data.report.rows_unusable == 1
    assert str(report.problems[0]).startswith("transactions.csv, line 3, column 'timestamp'")


def test_line_numbers_survive_blank_lines(tmp_path: Path) -> None:
    lines = TRANSACTIONS.splitlines()
    text = "\n".join([*lines[:2], "", *lines[2:3], "M-002,later,1,1,S2,GROCERY,0", *lines[3:]]) + "\n"
    data = load_partner(write_partner(tmp_path / "p", transactions_csv=text))
    problems = {(p.column, p.rows) for p in data.report.files[FileKind.TRANSACTIONS].problems}
    assert {("timestamp", (3,)), ("timestamp", (5,))} <= problems  # blank line 3, bad timestamp on line 5


def test_parquet_with_integer_ids_and_typed_columns(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    members = pd.read_csv(folder / "members.csv", dtype=str).assign(member_id=[1, 2, 3])
    members["joined_at"] = pd.to_datetime(members["joined_at"], format="ISO8601", utc=True)
    (folder / "members.csv").unlink()
    members.to_parquet(folder / "members.parquet")
    for name in ("transactions", "consents", "campaigns"):
        frame = pd.read_csv(folder / f"{name}.csv", dtype=str)
        frame["member_id"] = frame["member_id"].str.removeprefix("M-").astype(int)
        frame.to_csv(folder / f"{name}.csv", index=False)
    data = load_partner(folder)
    assert data.report.ok
    assert data.members["member_id"].tolist() == ["1", "2", "3"]
    assert data.members["joined_at"].dt.tz is None


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    folder = write_partner(tmp_path / "p")
    before = fingerprint_partner(folder)
    assert before == fingerprint_partner(folder)
    write_partner(folder, members_csv=MEMBERS.replace("120", "121"))
    assert fingerprint_partner(folder) != before


def test_federation_without_manifest_is_store_groups_in_default_region(tmp_path: Path) -> None:
    for name in ("b-node", "a-node"):
        write_partner(tmp_path / "fed" / name)
    federation = load_federation(tmp_path / "fed")
    assert federation.partner_ids == ("a-node", "b-node")
    assert {(p.kind, p.region) for p in federation.partners} == {(PartnerKind.STORE_GROUP, "default")}


def test_federation_manifest_errors_name_the_entry(tmp_path: Path) -> None:
    write_partner(tmp_path / "fed" / "carepl")
    manifest = tmp_path / "fed" / "federation.toml"
    manifest.write_text('[[partners]]\nid = "carepl"\nkind = "pharmacy"\n')
    with pytest.raises(DataContractError, match=r"federation.toml, partners.0.kind: Input should be"):
        load_federation(tmp_path / "fed")
    manifest.write_text('[[partners]]\nid = "carepl"\nkind = "brand"\nregion = "CN"\n')
    partner = load_federation(tmp_path / "fed").partner("carepl")
    assert (partner.kind, partner.region, partner.name) == (PartnerKind.BRAND, "CN", "carepl")


_AMOUNTS = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: f"{x:.2f}"),
    st.sampled_from(["", "abc", '"1,5"', "inf", "-0.01", " 7.5 "]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_AMOUNTS, min_size=1, max_size=30))
def test_exactly_the_bad_amounts_are_unusable(tmp_path: Path, amounts: list[str]) -> None:
    lines = [f"M-001,2017-01-02T10:00:00,{a}" for a in amounts]
    text = "member_id,timestamp,amount\n" + "\n".join(lines) + "\n"
    data = load_partner(write_partner(tmp_path / "p", transactions_csv=text))
    good = {}
    for line, raw in enumerate(amounts, start=2):
        try:
            value = float(raw.strip('"'))
        except ValueError:
            continue
        if abs(value) < float("inf"):  # negative amounts are refunds: usable
            good[line] = value
    report = data.report.files[FileKind.TRANSACTIONS]
    assert (report.rows_read, report.rows_usable) == (len(amounts), len(good))
    assert data.transactions["amount"].tolist() == pytest.approx(list(good.values()))
    first_bad = sorted(set(range(2, len(amounts) + 2)) - set(good))[:1]
    assert sorted({min(p.rows) for p in report.problems})[:1] == first_bad
