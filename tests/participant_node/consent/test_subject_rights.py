"""Data-subject rights at the node: access/export, erasure with tombstone and deadline, import."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from participant_node.consent import ConsentStore, SubjectRequestError, consented_members, store_path
from participant_node.consent.subject_rights import (
    erase_member,
    export_member,
    import_consents,
    overdue_erasures,
    withdraw_consents,
)
from participant_node.data import load_partner
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose
from policies.retention import ErasureRules

AT = datetime(2024, 6, 1)


def _partner(tmp_path: Path) -> Path:
    folder = tmp_path / "freshmart-north"
    folder.mkdir()
    (folder / "members.csv").write_text(
        "member_id,phone,joined_at\nm1,+8613800000001,2020-01-01\nm2,+8613800000002,2020-01-02\n"
        "m3,+8613800000003,2020-01-03\n",
        encoding="utf-8",
    )
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount\nm1,2024-01-01T10:00:00,3.50\nm2,2024-01-02T11:00:00,7.25\n"
        "m1,2024-02-01T10:00:00,1.00\nm3,2024-02-03T09:00:00,2.00\n",
        encoding="utf-8",
    )
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at,scope\n"
        + "".join(f"m{i},analytics.churn_model,2024-01-01,own\n" for i in (1, 2, 3)),
        encoding="utf-8",
    )
    return folder


def test_access_export_is_machine_readable_and_complete(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    store = ConsentStore.at_partner(folder)
    store.withdraw(["m1"], [Purpose.CHURN_MODEL], at=AT)
    store.close()
    export = export_member(folder, "m1", now=lambda: AT)
    assert json.loads(json.dumps(export)) == export
    assert len(export["transactions"]) == 2 and len(export["members"]) == 1 and len(export["consents"]) == 1
    assert export["consent_history"][0]["action"] == "withdraw"
    assert export["campaigns"] == []
    with pytest.raises(SubjectRequestError, match="no data held"):
        export_member(folder, "nobody")


def test_erasure_deletes_rows_keeps_identifier_free_tombstone_and_excludes(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    store = ConsentStore.at_partner(folder, now=lambda: datetime(2024, 6, 2))
    store.withdraw(["m1"], [Purpose.PROPENSITY_MODEL], at=AT)
    receipt = erase_member(
        folder, "m1", received_at=AT, jurisdictions=frozenset({Jurisdiction.CN}), store=store
    )
    store.close()
    assert receipt.rows_deleted == {
        "members": 1,
        "transactions": 2,
        "consents": 1,
        "campaigns": 0,
        "consent_store": 1,
    }
    assert receipt.on_time and receipt.deadline == datetime(2024, 7, 1)
    partner = load_partner(folder)
    assert "m1" not in set(partner.members["member_id"]) and "m1" not in set(
        partner.transactions["member_id"]
    )
    assert b"m1" not in store_path(folder).read_bytes()  # the tombstone holds no identifier
    # The member reappears in a later export of the source system: still excluded.
    (tmp_path / "again").mkdir()
    shutil.copy(_partner(tmp_path / "again") / "members.csv", folder / "members.csv")
    shutil.copy(tmp_path / "again" / "freshmart-north" / "consents.csv", folder / "consents.csv")
    partner = load_partner(folder)
    selection = consented_members(
        folder, partner.members, partner.consents, purpose=Purpose.CHURN_MODEL, at=AT
    )
    assert sorted(selection.member_ids) == ["m2", "m3"] and selection.excluded_by["erased"] == 1


def test_erasure_deadline_overdue_requests_reported(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    store = ConsentStore.at_partner(folder, now=lambda: datetime(2024, 8, 1))
    late = erase_member(folder, "m2", received_at=AT, jurisdictions=frozenset(Jurisdiction), store=store)
    store.close()
    assert not late.on_time
    (overdue,) = overdue_erasures(folder, now=datetime(2024, 8, 2))
    assert overdue.request_id == late.request_id
    assert overdue.deadline == datetime(2024, 7, 1)


def test_erasure_on_parquet_partner(cj_federation: Path, tmp_path: Path) -> None:
    folder = tmp_path / "freshmart-north"
    shutil.copytree(cj_federation / "freshmart-north", folder)
    before = load_partner(folder)
    member = str(before.transactions["member_id"].iloc[0])
    expected = int((before.transactions["member_id"] == member).sum())
    receipt = erase_member(folder, member, received_at=AT)
    assert receipt.rows_deleted["transactions"] == expected and receipt.rows_deleted["members"] == 1
    after = load_partner(folder)
    assert member not in set(after.members["member_id"])
    assert len(after.transactions) == len(before.transactions) - expected


def test_import_consents_appends_history_and_counts(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    extra = tmp_path / "guardian.csv"
    extra.write_text(
        "member_id,purpose,granted_at,lawful_basis,sensitive\n"
        "m3,analytics.churn_model,2024-03-01,guardian_consent,true\n",
        encoding="utf-8",
    )
    assert import_consents(folder, extra) == 1
    grants = ConsentStore.at_partner(folder).grants()
    assert list(grants["lawful_basis"]) == ["guardian_consent"] and bool(grants["sensitive"].iloc[0])
    partner = load_partner(folder)
    selection = consented_members(
        folder, partner.members, partner.consents, purpose=Purpose.CHURN_MODEL, at=AT, sensitive=True
    )
    assert list(selection.member_ids) == ["m3"]


def test_import_consents_bad_row_names_file_row_and_column(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "member_id,purpose,granted_at\nm1,analytics.churn_model,2024-01-01\nm2,shopping,2024-01-01\n"
    )
    with pytest.raises(SubjectRequestError, match=r"bad\.csv: line 3, column purpose"):
        import_consents(folder, bad)
    assert ConsentStore.at_partner(folder).grants().empty  # nothing written


def test_consent_withdraw_then_selection_excludes_on_complete_journey(cj_federation: Path) -> None:
    # Withdrawal holds for every later step: after a withdrawal recorded in the node store, the gate used
    # before training no longer selects those members and counts them as excluded.
    partner = load_partner(cj_federation / "freshmart-north")
    at = datetime(2018, 1, 1)
    folder = cj_federation / "freshmart-north"
    before = consented_members(folder, partner.members, partner.consents, purpose=Purpose.CHURN_MODEL, at=at)
    chosen = list(before.member_ids[:5])
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "freshmart-north"
        shutil.copytree(folder, copy)
        store = ConsentStore.at_partner(copy)
        store.withdraw(chosen, [Purpose.CHURN_MODEL], at=datetime(2017, 12, 1))
        store.close()
        after = consented_members(copy, partner.members, partner.consents, purpose=Purpose.CHURN_MODEL, at=at)
    assert not set(chosen) & set(after.member_ids)
    assert after.excluded == before.excluded + 5
    assert after.snapshot_hash != before.snapshot_hash
    assert isinstance(after.member_ids, pd.Index)


def test_erasing_an_unknown_member_is_refused_and_records_nothing(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.glob("*.csv")}
    with pytest.raises(SubjectRequestError, match="no member with the given id") as refused:
        erase_member(folder, "TYPO", received_at=AT)
    assert "TYPO" not in str(refused.value)
    assert {p.name: p.read_bytes() for p in folder.glob("*.csv")} == before
    store = ConsentStore.at_partner(folder)
    assert store.erasure_requests() == []
    store.close()


def test_erasing_twice_is_refused(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    erase_member(folder, "m2", received_at=AT)
    with pytest.raises(SubjectRequestError, match="already erased"):
        erase_member(folder, "m2", received_at=AT)


def test_withdrawing_an_unknown_member_is_refused_and_records_nothing(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    with pytest.raises(SubjectRequestError, match=r"1 of 3 member id\(s\).*id number 2 ") as refused:
        withdraw_consents(folder, ["m1", "TYPO", "m3"], [Purpose.CHURN_MODEL], at=AT)
    assert "TYPO" not in str(refused.value)
    store = ConsentStore.at_partner(folder)
    assert store.withdrawals().empty
    assert withdraw_consents(folder, ["m1", "m3"], [Purpose.CHURN_MODEL], at=AT, store=store) == 2
    store.close()


def test_programme_promise_in_working_days_sets_the_deadline(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    friday = datetime(2024, 5, 31, 10, 0)
    rules = ErasureRules(programme_promise="7 working days")
    receipt = erase_member(folder, "m1", received_at=friday, rules=rules)
    assert receipt.deadline == datetime(2024, 6, 11, 10, 0)  # Mon 3 .. Tue 11 June: 7 working days
    assert receipt.deadline_rule == "programme.promise"
    assert (receipt.legal_deadline, receipt.legal_rule) == (
        datetime(2024, 6, 30, 10, 0),
        "pipl.art47.gbt35273",
    )


def test_a_promise_longer_than_the_law_does_not_extend_the_deadline(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    rules = ErasureRules(programme_promise="60 days", jurisdiction_limits={Jurisdiction.EU: "45 days"})
    receipt = erase_member(folder, "m1", received_at=AT, jurisdictions=frozenset(Jurisdiction), rules=rules)
    assert (receipt.deadline, receipt.deadline_rule) == (datetime(2024, 7, 1), "gdpr.art12.3")
