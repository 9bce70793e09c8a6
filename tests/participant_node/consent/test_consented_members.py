"""The node's consent gate: each rule of issue 5 item 4, on small frames and the real store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from participant_node.consent import ConsentStore, consented_members, store_path
from policies.consent_record import ConsentRecord, LawfulBasis
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose

AT = datetime(2024, 6, 1)
CHURN = Purpose.CHURN_MODEL


def _members(ids: list[str], birth: list[str | None] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"member_id": pd.Series(ids, dtype="string")})
    if birth is not None:
        frame["birth_date"] = pd.to_datetime(pd.Series(birth)).astype("M8[us]")
    return frame


def _consents(rows: list[dict[str, object]]) -> pd.DataFrame:
    base = {
        "purpose": CHURN.value,
        "granted_at": "2024-01-01",
        "expires_at": None,
        "withdrawn_at": None,
        "lawful_basis": "consent",
        "scope": "own",
        "cross_border": False,
    }
    frame = pd.DataFrame([{**base, **row} for row in rows])
    for column in ("granted_at", "expires_at", "withdrawn_at"):
        frame[column] = pd.to_datetime(frame[column]).astype("M8[us]")
    for column in ("member_id", "purpose", "lawful_basis", "scope"):
        frame[column] = frame[column].astype("string")
    return frame


def _select(tmp_path: Path, members: pd.DataFrame, consents: pd.DataFrame, **kwargs: object) -> list[str]:
    kwargs.setdefault("purpose", CHURN)
    kwargs.setdefault("at", AT)
    selection = consented_members(tmp_path, members, consents, **kwargs)  # type: ignore[arg-type]
    assert selection.excluded == len(members) - len(selection.member_ids)
    return sorted(selection.member_ids)


def test_valid_consent_selects_member_and_no_consent_excludes(tmp_path: Path) -> None:
    selection = consented_members(
        tmp_path, _members(["a", "b"]), _consents([{"member_id": "a"}]), purpose=CHURN, at=AT
    )
    assert list(selection.member_ids) == ["a"]
    assert selection.excluded == 1
    assert selection.excluded_by["no_valid_consent"] == 1
    assert len(selection.snapshot_hash) == 64
    assert not store_path(tmp_path).exists()  # reading never creates a store


def test_purpose_limitation_other_purpose_does_not_count(tmp_path: Path) -> None:
    consents = _consents([{"member_id": "a", "purpose": Purpose.PROPENSITY_MODEL.value}])
    assert _select(tmp_path, _members(["a"]), consents) == []


def test_consent_granted_after_use_does_not_count(tmp_path: Path) -> None:
    consents = _consents([{"member_id": "a", "granted_at": "2024-07-01"}])
    assert _select(tmp_path, _members(["a"]), consents) == []


def test_expired_consent_excluded(tmp_path: Path) -> None:
    consents = _consents(
        [{"member_id": "a", "expires_at": "2024-05-31"}, {"member_id": "b", "expires_at": "2024-06-02"}]
    )
    assert _select(tmp_path, _members(["a", "b"]), consents) == ["b"]


def test_withdrawal_in_consents_file_excluded(tmp_path: Path) -> None:
    consents = _consents(
        [{"member_id": "a", "withdrawn_at": "2024-03-01"}, {"member_id": "b", "withdrawn_at": "2024-09-01"}]
    )
    assert _select(tmp_path, _members(["a", "b"]), consents) == ["b"]


def test_withdrawal_in_node_store_excludes_member(tmp_path: Path) -> None:
    consents = _consents([{"member_id": m} for m in ("a", "b", "c")])
    store = ConsentStore.at_partner(tmp_path)
    store.withdraw(["b"], [CHURN], at=datetime(2024, 5, 1))
    store.withdraw(["c"], [Purpose.PROPENSITY_MODEL], at=datetime(2024, 5, 1))
    store.close()
    assert _select(tmp_path, _members(["a", "b", "c"]), consents) == ["a", "c"]


def test_withdrawal_after_use_time_does_not_reach_back(tmp_path: Path) -> None:
    store = ConsentStore.at_partner(tmp_path)
    store.withdraw(["a"], [CHURN], at=datetime(2024, 7, 1))
    store.close()
    assert _select(tmp_path, _members(["a"]), _consents([{"member_id": "a"}])) == ["a"]


def test_regrant_after_store_withdrawal_counts(tmp_path: Path) -> None:
    store = ConsentStore.at_partner(tmp_path)
    store.withdraw(["a"], [CHURN], at=datetime(2024, 2, 1))
    store.append([ConsentRecord(member_id="a", purpose=CHURN, granted_at=datetime(2024, 3, 1))], source="t")
    store.close()
    assert _select(tmp_path, _members(["a"]), _consents([{"member_id": "a"}])) == ["a"]


def test_non_consent_lawful_basis_is_not_consent(tmp_path: Path) -> None:
    consents = _consents(
        [{"member_id": "a", "lawful_basis": "legitimate_interests"}, {"member_id": "b", "lawful_basis": None}]
    )
    assert _select(tmp_path, _members(["a", "b"]), consents) == ["b"]


@pytest.mark.parametrize(
    ("scope", "recipient", "covered"),
    [
        ("own", None, True),
        ("own", "careplus", False),
        ("federation", "careplus", True),
        ("federation", None, True),
        ("careplus;fuelgo", "fuelgo", True),
        ("careplus;fuelgo", "freshmart-east", False),
        (None, "careplus", False),
    ],
)
def test_separate_consent_per_recipient_scope(
    tmp_path: Path, scope: str | None, recipient: str | None, covered: bool
) -> None:
    consents = _consents([{"member_id": "a", "scope": scope}])
    assert _select(tmp_path, _members(["a"]), consents, recipient=recipient) == (["a"] if covered else [])


def test_cross_border_use_needs_separate_consent(tmp_path: Path) -> None:
    consents = _consents([{"member_id": "a", "cross_border": True}, {"member_id": "b"}])
    members = _members(["a", "b"])
    assert _select(tmp_path, members, consents, cross_border=True) == ["a"]
    assert _select(tmp_path, members, consents) == ["a", "b"]


def test_sensitive_use_needs_separate_consent(tmp_path: Path) -> None:
    consents = _consents([{"member_id": "a", "sensitive": True}, {"member_id": "b"}])
    assert _select(tmp_path, _members(["a", "b"]), consents, sensitive=True) == ["a"]


def test_minor_under_14_needs_guardian_consent(tmp_path: Path) -> None:
    members = _members(
        ["kid", "guarded", "adult", "unknown"], ["2012-01-01", "2012-01-01", "1990-01-01", None]
    )
    consents = _consents(
        [
            {"member_id": "kid"},
            {"member_id": "guarded", "lawful_basis": LawfulBasis.GUARDIAN_CONSENT.value},
            {"member_id": "adult"},
            {"member_id": "unknown"},
        ]
    )
    selection = consented_members(tmp_path, members, consents, purpose=CHURN, at=AT)
    assert sorted(selection.member_ids) == ["adult", "guarded", "unknown"]
    assert selection.excluded_by["minor_without_guardian_consent"] == 1


def test_minor_age_follows_jurisdiction(tmp_path: Path) -> None:
    members = _members(["fifteen"], ["2009-01-01"])
    consents = _consents([{"member_id": "fifteen"}])
    assert _select(tmp_path, members, consents, jurisdictions=frozenset({Jurisdiction.CN})) == ["fifteen"]
    assert _select(tmp_path, members, consents, jurisdictions=frozenset({Jurisdiction.EU})) == []


def test_erased_member_excluded_even_if_file_still_lists_them(tmp_path: Path) -> None:
    store = ConsentStore.at_partner(tmp_path)
    from policies.consent_filter import member_tags

    tag = int(member_tags(pd.Series(["a"]), store.tag_key)[0])
    store.open_erasure(tag, received_at=AT, jurisdictions=frozenset({Jurisdiction.CN}))
    store.close()
    selection = consented_members(
        tmp_path,
        _members(["a", "b"]),
        _consents([{"member_id": "a"}, {"member_id": "b"}]),
        purpose=CHURN,
        at=AT,
    )
    assert list(selection.member_ids) == ["b"]
    assert selection.excluded_by["erased"] == 1


def test_snapshot_hash_changes_with_withdrawal_and_is_stable(tmp_path: Path) -> None:
    members, consents = _members(["a", "b"]), _consents([{"member_id": "a"}, {"member_id": "b"}])
    first = consented_members(tmp_path, members, consents, purpose=CHURN, at=AT).snapshot_hash
    assert consented_members(tmp_path, members, consents, purpose=CHURN, at=AT).snapshot_hash == first
    store = ConsentStore.at_partner(tmp_path)
    store.withdraw(["a"], [CHURN], at=datetime(2024, 5, 1))
    store.close()
    assert consented_members(tmp_path, members, consents, purpose=CHURN, at=AT).snapshot_hash != first


def test_large_frames_agree_with_row_by_row_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    ids = [f"m{i}" for i in range(n)]
    consents = _consents(
        [
            {
                "member_id": ids[int(rng.integers(n))],
                "purpose": rng.choice([p.value for p in Purpose]),
                "granted_at": f"2024-0{int(rng.integers(1, 9))}-01",
                "scope": rng.choice(["own", "federation", "careplus;fuelgo"]),
            }
            for _ in range(3 * n)
        ]
    )
    got = _select(tmp_path, _members(ids), consents, recipient="fuelgo")
    ok = consents[
        (consents.purpose == CHURN.value)
        & (consents.granted_at <= AT)
        & consents.scope.isin(["federation", "careplus;fuelgo"])
    ]
    assert got == sorted(set(ok.member_id))
