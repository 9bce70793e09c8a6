"""Lineage events: validated at construction, versioned, and never carrying a member identifier."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.audit_log import AuditLog
from audit.lineage_event import SCHEMA_VERSION, EventRejectedError, LineageEvent

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
BASE = {"event_type": "psi.run", "actor": "coordinator", "role": "coordinator"}


def smuggle(value: str) -> list[dict]:
    """One record per free-text slot of the event model, each carrying ``value``."""
    fingerprint = "ab" * 32
    return [
        {**BASE, "actor": value},
        {**BASE, "partner": value},
        {**BASE, "job_id": value},
        {**BASE, "model_id": value},
        {**BASE, "partners": ["careplus", value]},
        {**BASE, "categories": [value]},
        {**BASE, "inputs": [{"partner": value, "fingerprint": fingerprint}]},
        {**BASE, "inputs": [{"partner": "careplus", "fingerprint": fingerprint, "name": value}]},
        {**BASE, "outputs": [{"name": value, "sha256": fingerprint}]},
        {**BASE, "details": {value: 1}},
        {**BASE, "details": {"matched": value}},
        {**BASE, "policy_hash": value},
        {**BASE, "member_id": value},
        {**BASE, "details": {"member_id": 1}},
    ]


def test_valid_event_round_trips_and_is_versioned() -> None:
    event = LineageEvent.from_record(
        {
            "event_type": "consent.withdrawn",
            "partner": "careplus",
            "details": {"withdrawn": 12},
            "role": "Data Officer",
        },
        now=NOW,
    )
    assert event.schema_version == SCHEMA_VERSION and event.role == "data_officer"
    assert LineageEvent.from_canonical(event.canonical_bytes()) == event
    with pytest.raises(Exception, match="frozen"):
        event.actor = "someone"  # type: ignore[misc]


@pytest.mark.parametrize(
    "record, rule",
    [
        ({**BASE, "event_type": "model.deleted"}, "event_type"),
        ({**BASE, "epsilon": -1.0}, "epsilon"),
        ({**BASE, "delta": 1.0}, "delta"),
        ({**BASE, "time": datetime(2026, 3, 1)}, "timezone-aware"),
        ({**BASE, "schema_version": "0.9"}, "schema_version"),
        ({**BASE, "details": {"rows": float("nan")}}, "finite"),
        ({**BASE, "purpose": "churn"}, "purpose"),
    ],
)
def test_invalid_events_are_refused_naming_the_rule(record: dict, rule: str) -> None:
    with pytest.raises(EventRejectedError, match=rule):
        LineageEvent.from_record(record, now=NOW)


@settings(max_examples=15, deadline=None)
@given(
    st.one_of(
        st.from_regex(r"\A[a-z]{3,10}[0-9]{0,4}@[a-z]{3,8}\.(com|cn|de)\Z"),
        st.from_regex(r"\A\+?[0-9]{2,3}[ -]?[0-9]{3,4}[ -]?[0-9]{4}\Z"),
        st.from_regex(r"\A\+86 ?1[0-9]{10}\Z"),
        st.from_regex(r"\A(FM|CP|FG)-[0-9]{7}\Z"),
    )
)
def test_identifier_shaped_values_are_refused_in_every_slot(value: str) -> None:
    for record in smuggle(value):
        with pytest.raises(EventRejectedError) as refused:
            LineageEvent.from_record(record, now=NOW)
        assert value not in str(refused.value)  # the refusal never echoes the identifier


def _identifiers(federation: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"member_id": [], "phone": [], "email": []}
    for members in sorted(federation.glob("*/members.*")):
        frame = pd.read_parquet(members) if members.suffix == ".parquet" else pd.read_csv(members, dtype=str)
        for column, values in found.items():
            if column in frame:
                values.extend(frame[column].dropna().astype(str))
    return found


def test_no_member_identifier_ever_enters_the_log(cj_federation: Path, tmp_path: Path) -> None:
    """Feed a demo-like stream plus smuggling attempts with real Complete Journey identifiers
    through the sink path, then search the raw database files for every identifier."""
    identifiers = _identifiers(cj_federation)
    assert all(len(v) > 1000 for v in identifiers.values())
    rng = random.Random(7)
    path = tmp_path / "audit.sqlite"
    accepted = refused = 0
    with AuditLog.open(path) as log:
        for kind, values in identifiers.items():
            for value in rng.sample(values, 30):
                for record in smuggle(value):
                    try:
                        log.append(LineageEvent.from_record(record, now=NOW))
                        accepted += 1
                    except EventRejectedError:
                        refused += 1
            log.append(LineageEvent.from_record({**BASE, "details": {f"{kind}_count": len(values)}}, now=NOW))
    assert accepted == 0 and refused == 3 * 30 * len(smuggle("x"))
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("audit.sqlite"))
    leaked = [v for values in identifiers.values() for v in values if v.encode() in raw]
    assert leaked == []


@pytest.mark.parametrize("job_id", ["job-3f9a0c12b7de", "job-123456789012", "3f9a0c12", str(UUID(int=7))])
def test_coordinator_minted_ids_are_accepted(job_id: str) -> None:
    assert LineageEvent.from_record({**BASE, "job_id": job_id, "model_id": job_id}, now=NOW).job_id == job_id


@pytest.mark.parametrize(
    "job_id", ["FM-0004711", "fm-0004711", "12345678", "member-00471100", "8613123456789"]
)
def test_identifier_like_run_ids_are_refused(job_id: str) -> None:
    with pytest.raises(EventRejectedError, match="job_id"):
        LineageEvent.from_record({**BASE, "job_id": job_id}, now=NOW)
