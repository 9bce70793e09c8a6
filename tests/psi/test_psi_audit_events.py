"""Every PSI run and every cached-set step appends its lineage event, and no member identifier.

`psi run` in each mode (intersection, cardinality, sum) and the four `psi cache` steps (build,
query, answer, match) run on two small partner folders; each appends one event to the CLI's audit
log naming the actor and role, the consent purpose, the two partners, the member files by
fingerprint and the files written by hash. The log never holds a member id or a phone number.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from psi_partner_folders import AT, write_matching_partner
from typer.testing import CliRunner

from audit.audit_log import AuditLog
from audit.lineage_event import EventType
from loyalfed.cli.psi_commands import psi as app

RUNNER = CliRunner()
SECRET = "federation-secret-for-this-test"
PURPOSE = "marketing.cross_brand_matching"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _invoke(*args: str) -> None:
    result = RUNNER.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (args, result.output)


def test_psi_runs_and_cached_set_steps_are_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALFED_PSI_SECRET", SECRET)
    monkeypatch.setenv("LOYALFED_ACTOR", "partner_operator:freshmart")
    a = write_matching_partner(
        tmp_path / "freshmart", [(f"a{i}", f"+1 415 555 {i:04d}", "") for i in range(30)]
    )
    b_rows = [(f"b{i}", f"415555{i:04d}", str(i)) for i in range(20, 50)]
    b = write_matching_partner(tmp_path / "fuelgo", b_rows, value_column="points_balance")
    run = ["run", "--a", str(a), "--b", str(b), "--at", AT]
    _invoke(*run, "--out", str(tmp_path / "matches.csv"))
    _invoke(*run, "--mode", "cardinality")
    _invoke(*run, "--mode", "sum", "--value-column", "points_balance", "--paillier-bits", "1024")
    files = {name: tmp_path / name for name in ("tags", "key", "query", "state", "answer", "cached.csv")}
    common = ["--at", AT, "--default-region", "US"]
    _invoke("cache", "build", "--set", str(b), "--recipient", "freshmart", "--epoch", "2026-W49",
            "--out", str(files["tags"]), "--key-out", str(files["key"]), *common)  # fmt: skip
    _invoke("cache", "query", "--set", str(a), "--recipient", "fuelgo", "--tags", str(files["tags"]),
            "--out", str(files["query"]), "--state", str(files["state"]), *common)  # fmt: skip
    _invoke("cache", "answer", "--key", str(files["key"]), "--query", str(files["query"]),
            "--out", str(files["answer"]))  # fmt: skip
    _invoke("cache", "match", "--set", str(a), "--recipient", "fuelgo", "--tags", str(files["tags"]),
            "--state", str(files["state"]), "--answer", str(files["answer"]),
            "--out", str(files["cached.csv"]), *common)  # fmt: skip

    log_path = tmp_path / "loyalfed-state" / "audit.sqlite"  # tests/conftest.py's data directory
    with AuditLog.open(log_path) as log:
        events = [event for _, event in log.iter_events()]
    steps = [(e.event_type, e.details.get("mode"), e.details.get("psi_role")) for e in events]
    assert steps == [
        (EventType.PSI_RUN, "intersection", "both"),
        (EventType.PSI_RUN, "cardinality", "both"),
        (EventType.PSI_RUN, "sum", "both"),
        (EventType.PSI_CACHE_EPOCH, "cached_set", "holder_build"),
        (EventType.PSI_RUN, "cached_set", "partner_query"),
        (EventType.PSI_CACHE_EPOCH, "cached_set", "holder_answer"),
        (EventType.PSI_RUN, "cached_set", "partner_match"),
    ]
    for event in events:
        assert (event.actor, event.role, event.purpose) == (
            "partner_operator:freshmart",
            "partner_operator",
            PURPOSE,
        )
        assert set(event.partners) == {"freshmart", "fuelgo"}
    fingerprints = {ref.partner: ref.fingerprint for ref in events[0].inputs}
    assert set(fingerprints) == {"freshmart", "fuelgo"} and all(len(f) == 64 for f in fingerprints.values())
    assert {o.name: o.sha256 for o in events[0].outputs} == {"matches": _sha256(tmp_path / "matches.csv")}
    build, query, answer, match = events[3:]
    assert build.outputs[0].sha256 == _sha256(files["tags"])
    assert [i.fingerprint for i in query.inputs][1] == _sha256(files["tags"]) == match.inputs[1].fingerprint
    assert {o.name: o.sha256 for o in answer.outputs} == {
        "query": _sha256(files["query"]),
        "answer": _sha256(files["answer"]),
    }
    assert {o.name: o.sha256 for o in match.outputs} == {"matches": _sha256(files["cached.csv"])}
    # Identifiers: every value but the digests (hex, where digits occur by chance) is checked.
    texts = [e.model_dump_json(exclude={"inputs", "outputs"}) for e in events]
    texts += [f"{r.partner} {r.name}" for e in events for r in e.inputs]
    texts += [r.name for e in events for r in e.outputs]
    members = [f'"{side}{i}"' for side in "ab" for i in range(50)] + [f"555{i:04d}" for i in range(50)]
    assert not [m for m in members for text in texts if m in text]


def test_psi_run_under_a_policy_audits_its_hash_and_an_unapproved_one_is_refused_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator.approvals import PolicyRegistry
    from loyalfed.local_officers import approve_as_local_officers, experiment_policy, officers_dir_for
    from policies.purpose import Purpose
    from policies.roles import Actor, Role

    monkeypatch.setenv("LOYALFED_PSI_SECRET", SECRET)
    a = write_matching_partner(
        tmp_path / "freshmart", [(f"a{i}", f"+1 415 555 {i:04d}", "") for i in range(30)]
    )
    b = write_matching_partner(tmp_path / "fuelgo", [(f"b{i}", f"415555{i:04d}", "") for i in range(20, 50)])
    registry = tmp_path / "policies" / "registry.sqlite"
    registry.parent.mkdir()
    book = PolicyRegistry.at_path(registry)
    try:
        policy = experiment_policy(
            Purpose.CROSS_BRAND_MATCHING, ["freshmart", "fuelgo"], regions=["US"], epsilon=1.0, delta=1e-5
        )
        drafted = book.draft(policy, actor=Actor(Role.ANALYST))
        run = ["run", "--a", str(a), "--b", str(b), "--at", AT, "--registry", str(registry), "--json"]
        # Drafted, not yet approved: refused with one line, before any member file is read.
        refused = RUNNER.invoke(app, [*run, "--policy", drafted.policy_id])
        assert refused.exit_code != 0 and "not approved: freshmart has not approved" in str(refused.exception)
        approved = approve_as_local_officers(book, drafted.ref, officers_dir=officers_dir_for(registry))
    finally:
        book.close()
    _invoke(*run[:-1], "--policy", approved.policy_id)
    wrong_purpose = RUNNER.invoke(
        app, [*run, "--policy", approved.policy_id, "--purpose", "analytics.churn_model"]
    )
    assert wrong_purpose.exit_code != 0 and "not analytics.churn_model" in str(wrong_purpose.exception)
    with AuditLog.open(tmp_path / "loyalfed-state" / "audit.sqlite") as log:
        events = [event for _, event in log.iter_events() if event.event_type == EventType.PSI_RUN]
    completed = [e for e in events if e.policy_hash is not None]
    assert [e.policy_hash for e in completed] == [approved.content_hash]
    assert completed[0].purpose == PURPOSE and set(completed[0].partners) == {"freshmart", "fuelgo"}
