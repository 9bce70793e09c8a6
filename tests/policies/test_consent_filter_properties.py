"""Property: the vectorised consent filter selects exactly what a record-by-record reading selects."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.consent_filter import ConsentQuery, select_consented
from policies.consent_record import scope_covers
from policies.purpose import Purpose

AT = datetime(2024, 6, 1)
MEMBERS = [f"m{i}" for i in range(6)]
# Under 14 at AT (PIPL Art. 31): m0, m1, m4 (turns 14 the day after AT); m5 turns 14 on AT; m3 unknown.
BIRTH = ["2015-01-01", "2012-03-04", "1990-01-01", None, "2010-06-02", "2010-06-01"]
MINORS = {"m0", "m1", "m4"}
SCOPES = [None, "own", "federation", "careplus", "careplus;fuelgo"]
BASES = [None, "consent", "guardian_consent", "contract", "legitimate_interests"]
PURPOSES = [Purpose.CHURN_MODEL.value, Purpose.CROSS_BRAND_MATCHING.value]


def _moment(days: int | None) -> datetime | None:
    return None if days is None else AT + timedelta(days=days)


record = st.fixed_dictionaries(
    {
        "member_id": st.sampled_from(MEMBERS),
        "purpose": st.sampled_from(PURPOSES),
        "granted_at": st.integers(-30, 5).map(_moment),
        "expires_at": st.one_of(st.none(), st.integers(-10, 10)).map(_moment),
        "withdrawn_at": st.one_of(st.none(), st.integers(-10, 10)).map(_moment),
        "lawful_basis": st.sampled_from(BASES),
        "scope": st.sampled_from(SCOPES),
        "cross_border": st.booleans(),
    }
)
withdrawal = st.fixed_dictionaries(
    {
        "member_id": st.sampled_from(MEMBERS),
        "purpose": st.sampled_from(PURPOSES),
        "withdrawn_at": st.integers(-30, 5).map(_moment),
    }
)


def _frame(rows: list[dict[str, object]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column.endswith("_at"):
            frame[column] = pd.to_datetime(frame[column]).astype("M8[us]")
        elif column != "cross_border":
            frame[column] = frame[column].astype("string")
    return frame


def _reference(records: list[dict], withdrawals: list[dict], query: ConsentQuery) -> set[str]:
    chosen: set[str] = set()
    guarded: set[str] = set()
    for r in records:
        revoked = [
            w["withdrawn_at"]
            for w in withdrawals
            if w["member_id"] == r["member_id"]
            and w["purpose"] == query.purpose.value
            and w["withdrawn_at"] <= AT
        ]
        if (
            r["purpose"] == query.purpose.value
            and r["granted_at"] <= AT
            and (r["expires_at"] is None or r["expires_at"] > AT)
            and (r["withdrawn_at"] is None or r["withdrawn_at"] > AT)
            and r["lawful_basis"] in (None, "consent", "guardian_consent")
            and scope_covers(r["scope"], query.recipient)
            and (r["cross_border"] or not query.cross_border)
            and not (revoked and r["granted_at"] <= max(revoked))
        ):
            chosen.add(r["member_id"])
            if r["lawful_basis"] == "guardian_consent":
                guarded.add(r["member_id"])
    return {m for m in chosen if m not in MINORS or m in guarded}


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(record, min_size=1, max_size=25),
    withdrawals=st.lists(withdrawal, max_size=6),
    purpose=st.sampled_from([Purpose.CHURN_MODEL, Purpose.CROSS_BRAND_MATCHING]),
    recipient=st.sampled_from([None, "careplus", "fuelgo", "freshmart-east"]),
    cross_border=st.booleans(),
)
def test_vectorised_filter_equals_reference(
    records: list[dict], withdrawals: list[dict], purpose: Purpose, recipient: str | None, cross_border: bool
) -> None:
    members = pd.DataFrame(
        {"member_id": pd.Series(MEMBERS, dtype="string"), "birth_date": pd.to_datetime(pd.Series(BIRTH))}
    )
    consents = _frame(records, list(records[0]))
    store = _frame(withdrawals, ["member_id", "purpose", "withdrawn_at"])
    query = ConsentQuery(purpose=purpose, at=AT, recipient=recipient, cross_border=cross_border)
    selection = select_consented(members, consents, query, withdrawals=store)
    assert set(selection.member_ids) == _reference(records, withdrawals, query)
    assert selection.excluded == len(MEMBERS) - len(selection.member_ids)
