"""Every entry point that reads member data passes the node gate: entry point × rule.

One partner folder of 30 members who may be used for everything, plus member ``x`` who breaks
exactly one rule (or none, the control). Each entry point runs for real — training data loading,
scoring with a published model, the node's PSI set, the points-interchange set, ``psi run`` and
the ``psi cache`` steps — and the test reads which members it used: ``x`` only in the control.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch
from model_card_example import example_card
from typer.testing import CliRunner

from loyalfed.cli.psi_commands import psi as psi_app
from models.feature_schema import default_feature_schema
from models.networks import make_model
from participant_node.consent import (
    ConsentStore,
    GateRefusedError,
    GateRule,
    MemberDataUse,
    TransferRefusedError,
    admit,
)
from participant_node.data import load_partner
from participant_node.matching import MatchingError, consented_member_frame, gated_matching_set
from participant_node.training.local_task_data import load_local_task_data
from participant_node.training.scoring import score_partner
from policies.consent_filter import member_tags
from policies.consent_record import ConsentRecord
from policies.jurisdiction import Jurisdiction
from policies.policy import DataUsePolicy, parse_policy
from policies.purpose import Purpose
from protocol import JobSpec, write_model_card

AT = datetime(2024, 6, 1)  # the moment of use
AS_OF = datetime(2024, 3, 1)  # the labelling date of the training job and of the scores
PURPOSES = tuple(Purpose)
OK = [f"ok{i:02d}" for i in range(30)]
SECRET = b"federation-matching-secret-0001"
RUNNER = CliRunner()
# GateRule.WITHDRAWAL_ERASURE, tested as its two halves.
WITHDRAWAL, ERASURE = "withdrawal", "erasure"


def _phone(member: str) -> str:
    return f"+86138{abs(hash(member)) % 10**8:08d}" if member != "x" else "+8613899999999"


def _write_partner(folder: Path, *, rule: str | None, purpose: Purpose) -> Path:
    """Members OK and x; x breaks ``rule`` for a use for ``purpose`` (None: x breaks nothing)."""
    folder.mkdir(parents=True)
    members = [*OK, "x"]
    joined = {m: "2015-01-01" if (m == "x" and rule == GateRule.RETENTION) else "2022-01-01" for m in members}
    (folder / "members.csv").write_text(
        "member_id,phone,joined_at,age_band\n"
        + "".join(f"{m},{_phone(m)},{joined[m]},25-34\n" for m in members)
    )
    rows = []
    for index, member in enumerate(members):
        dates = ["2015-03-01", "2016-02-01"] if joined[member] == "2015-01-01" else _shopping_days(index)
        rows += [f"{member},{day}T10:00:00,{5 + index % 7}.50,s{index % 3}" for day in dates]
    (folder / "transactions.csv").write_text("member_id,timestamp,amount,store_id\n" + "\n".join(rows) + "\n")
    consents = []
    for member in members:
        for granted in PURPOSES:
            if member == "x" and rule == GateRule.PURPOSE and granted == purpose:
                continue
            scope = "someone-else" if member == "x" and rule == GateRule.RECIPIENT_SCOPE else "federation"
            consents.append(f"{member},{granted},2022-01-01,{scope}")
    (folder / "consents.csv").write_text("member_id,purpose,granted_at,scope\n" + "\n".join(consents) + "\n")
    if rule in (WITHDRAWAL, ERASURE):
        _record_in_consent_store(folder, rule, purpose)
    return folder


def _shopping_days(index: int) -> list[str]:
    history = [f"2023-{month:02d}-10" for month in range(6, 13)] + ["2024-01-15", "2024-02-20"]
    return history + (["2024-03-15", "2024-04-10"] if index % 2 == 0 else [])


def _record_in_consent_store(folder: Path, rule: str, purpose: Purpose) -> None:
    # Recorded in the node's consent store after the files were written: a withdrawal for the
    # use's purpose, or an erasure tombstone (the file rewrite not yet done: only the gate stops x).
    store = ConsentStore.at_partner(folder)
    try:
        if rule == WITHDRAWAL:
            store.withdraw(["x"], [purpose], at=datetime(2024, 5, 1))
        else:
            tag = int(member_tags(pd.Series(["x"]), store.tag_key)[0])
            store.open_erasure(
                tag, received_at=datetime(2024, 5, 2), jurisdictions=frozenset({Jurisdiction.CN})
            )
    finally:
        store.close()


def _peer(folder: Path) -> Path:
    """The other party of PSI: the same phones, all consented to everything with everyone."""
    return _write_partner(folder, rule=None, purpose=Purpose.CROSS_BRAND_MATCHING)


# Entry points: (the purpose they use member data for, run(partner folder, tmp) -> member ids used).
def _training(partner: Path, _tmp: Path) -> set[str]:
    data = load_local_task_data(partner, _training_spec(), at=AT)
    return {*map(str, data.train.member_ids), *map(str, data.heldout.member_ids)}


def _scoring(partner: Path, tmp: Path) -> set[str]:
    schema = default_feature_schema()
    model_dir = tmp / "model"
    model_dir.mkdir()
    torch.save(make_model("logreg", schema.n_features).state_dict(), model_dir / "model.pt")
    write_model_card(model_dir, example_card("churn"))
    return set(score_partner(partner, model_dir, as_of=AS_OF, now=AT)["member_id"])


def _psi_set(purpose: Purpose) -> Callable[[Path, Path], set[str]]:
    def run(partner: Path, _tmp: Path) -> set[str]:
        matching = gated_matching_set(
            load_partner(partner), purpose=purpose, recipient="fuelgo", at=AT, id_column="phone",
            secret=SECRET, default_region="CN",
        )  # fmt: skip
        return set(matching.member_ids)

    return run


def _psi_run(partner: Path, tmp: Path) -> set[str]:
    out = tmp / "matches.csv"
    args = ["run", "--a", str(partner), "--b", str(_peer(tmp / "fuelgo")), "--at", AT.isoformat()]
    result = RUNNER.invoke(psi_app, [*args, "--default-region", "CN", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return {row[0] for row in list(csv.reader(out.open()))[1:]}


def _psi_cache(partner: Path, tmp: Path) -> set[str]:
    """The partner side of an unbalanced PSI against fuelgo's cached epoch set."""
    secret, holder = tmp / "secret", _peer(tmp / "fuelgo")
    secret.write_bytes(SECRET)
    files = {n: str(tmp / n) for n in ("tags", "key", "query", "state", "answer", "out.csv")}
    common = ["--secret-file", str(secret), "--default-region", "CN", "--at", AT.isoformat(), "--json"]
    steps = [
        ["build", "--set", str(holder), "--recipient", partner.name, "--epoch", "e1", "--out", files["tags"],
         "--key-out", files["key"], *common],
        ["query", "--set", str(partner), "--recipient", "fuelgo", "--tags", files["tags"],
         "--out", files["query"], "--state", files["state"], *common],
        ["answer", "--key", files["key"], "--query", files["query"], "--out", files["answer"], "--json"],
        ["match", "--set", str(partner), "--recipient", "fuelgo", "--tags", files["tags"],
         "--state", files["state"], "--answer", files["answer"], "--out", files["out.csv"], *common],
    ]  # fmt: skip
    for step in steps:
        result = RUNNER.invoke(psi_app, ["cache", *step])
        assert result.exit_code == 0, result.output
    return {row[0] for row in list(csv.reader(open(files["out.csv"])))[1:]}


ENTRY_POINTS = {
    "training": (Purpose.CHURN_MODEL, _training),
    "scoring": (Purpose.CHURN_MODEL, _scoring),
    "psi_service_set": (Purpose.CROSS_BRAND_MATCHING, _psi_set(Purpose.CROSS_BRAND_MATCHING)),
    "points_interchange_set": (Purpose.POINTS_INTERCHANGE, _psi_set(Purpose.POINTS_INTERCHANGE)),
    "psi_run_command": (Purpose.CROSS_BRAND_MATCHING, _psi_run),
    "psi_cache_commands": (Purpose.CROSS_BRAND_MATCHING, _psi_cache),
}
# Member-level results leave the node only from PSI and points interchange; training and scoring
# are the node's own use (DP-noised updates, local scores), where the recipient-scope rule is moot.
_SCOPED = {"psi_service_set", "points_interchange_set", "psi_run_command", "psi_cache_commands"}
_MEMBER_RULES = (None, GateRule.PURPOSE, GateRule.RECIPIENT_SCOPE, WITHDRAWAL, ERASURE, GateRule.RETENTION)
CASES = [
    pytest.param(entry, rule, id=f"{entry}-{rule or 'control'}")
    for entry in ENTRY_POINTS
    for rule in _MEMBER_RULES
    if rule != GateRule.RECIPIENT_SCOPE or entry in _SCOPED
]


@pytest.mark.parametrize(("entry", "rule"), CASES)
def test_each_entry_point_leaves_out_the_member_a_rule_excludes(
    entry: str, rule: str | None, tmp_path: Path
) -> None:
    purpose, run = ENTRY_POINTS[entry]
    used = run(_write_partner(tmp_path / "north", rule=rule, purpose=purpose), tmp_path)
    assert set(OK) <= used
    assert ("x" in used) is (rule is None)


def _policy(purpose: Purpose, **overrides: object) -> DataUsePolicy:
    data: dict[str, object] = {
        "policy_id": "gate-test",
        "title": "gate test",
        "purpose": purpose.value,
        "partners": ["north", "fuelgo"],
        "columns": {
            "members": ["member_id", "joined_at", "phone"],
            "transactions": ["member_id", "timestamp", "amount", "store_id"],
        },
        "privacy": {"epsilon": 4.0, "delta": 1e-5},
        "impact_assessment": {"reference": "PIA-1", "completed_on": "2024-01-01"},
        **overrides,
    }
    return parse_policy(data)


def _training_spec() -> JobSpec:
    return JobSpec(
        job_id="gate-test", task="churn", model="logreg", epsilon=1.0,
        delta=1e-5, rounds=1, local_steps=1, batch_size=8, learning_rate=0.1, max_grad_norm=1.0,
        k_min=2, as_of=AS_OF, horizon_days=60,
    )  # fmt: skip


def test_cross_border_is_refused_at_training_and_at_psi_without_a_transfer_mechanism(tmp_path: Path) -> None:
    north = _write_partner(tmp_path / "north", rule=None, purpose=Purpose.CHURN_MODEL)
    abroad = _policy(Purpose.CHURN_MODEL, coordinator_region="DE", regions=["CN", "DE"])
    with pytest.raises(TransferRefusedError, match="refuses to send to DE"):
        load_local_task_data(north, _training_spec(), at=AT, policy=abroad, node_region="CN")
    matching = _policy(Purpose.CROSS_BRAND_MATCHING)
    for purpose in (Purpose.CROSS_BRAND_MATCHING, Purpose.POINTS_INTERCHANGE):
        with pytest.raises(TransferRefusedError, match="allows no cross-border transfer"):
            gated_matching_set(
                load_partner(north), purpose=purpose, recipient="fuelgo", at=AT, id_column="phone",
                secret=SECRET, node_region="CN", destination_region="DE",
                policy=matching if purpose is Purpose.CROSS_BRAND_MATCHING else None,
            )  # fmt: skip


def test_a_transfer_allowed_by_the_policy_takes_only_members_with_cross_border_consent(
    tmp_path: Path,
) -> None:
    north = _write_partner(tmp_path / "north", rule=None, purpose=Purpose.CROSS_BRAND_MATCHING)
    consents = (north / "consents.csv").read_text().replace("scope\n", "scope,cross_border\n", 1)
    lines = [line + (",true" if line.startswith("ok0") else ",false") for line in consents.splitlines()[1:]]
    (north / "consents.csv").write_text("\n".join([consents.splitlines()[0], *lines]) + "\n")
    policy = _policy(
        Purpose.CROSS_BRAND_MATCHING,
        regions=["CN", "DE"],
        cross_border={"allowed": True, "mechanism": "cn_standard_contract"},
    )
    matching = gated_matching_set(
        load_partner(north), purpose=Purpose.CROSS_BRAND_MATCHING, recipient="fuelgo", at=AT,
        id_column="phone", secret=SECRET, node_region="CN", destination_region="DE", policy=policy,
    )  # fmt: skip
    assert sorted(matching.member_ids) == [f"ok0{i}" for i in range(10)]


def test_minimisation_at_psi_keeps_the_identifier_only_and_refuses_one_the_policy_lacks(
    tmp_path: Path,
) -> None:
    north = load_partner(_write_partner(tmp_path / "north", rule=None, purpose=Purpose.CROSS_BRAND_MATCHING))
    gated = consented_member_frame(
        north, purpose=Purpose.CROSS_BRAND_MATCHING, recipient="fuelgo", at=AT, columns=("phone",)
    )
    assert list(gated.members.columns) == ["member_id", "phone"]  # joined_at, age_band never pass
    no_phone = _policy(Purpose.CROSS_BRAND_MATCHING, columns={"members": ["member_id", "joined_at", "email"]})
    with pytest.raises(MatchingError, match=r"does not allow members\.phone"):
        gated_matching_set(
            north, purpose=Purpose.CROSS_BRAND_MATCHING, recipient="fuelgo", at=AT, id_column="phone",
            secret=SECRET, policy=no_phone,
        )  # fmt: skip


def test_minimisation_at_training_demographics_only_with_the_sensitive_data_consent(tmp_path: Path) -> None:
    north = _write_partner(tmp_path / "north", rule=None, purpose=Purpose.CHURN_MODEL)
    data = load_local_task_data(north, _training_spec(), at=AT)
    assert set(data.train.groups["age_band"]) == {"unknown"}  # nobody gave the separate consent
    # The separate sensitive-data consent is recorded in the node's consent store (PIPL Art. 29).
    store = ConsentStore.at_partner(north)
    granted = datetime(2024, 1, 1)
    records = [
        ConsentRecord(member_id=f"ok1{i}", purpose=Purpose.CHURN_MODEL, granted_at=granted, sensitive=True)
        for i in range(10)
    ]
    store.append(records, source="test")
    store.close()
    data = load_local_task_data(north, _training_spec(), at=AT)
    both = {
        m: g
        for split in (data.train, data.heldout)
        for m, g in zip(map(str, split.member_ids), split.groups["age_band"], strict=True)
    }
    assert {m for m, g in both.items() if g == "25-34"} == {f"ok1{i}" for i in range(10)} & set(both)


def test_a_use_outside_the_policy_purpose_or_partners_is_refused(tmp_path: Path) -> None:
    north = load_partner(_write_partner(tmp_path / "north", rule=None, purpose=Purpose.CHURN_MODEL))
    with pytest.raises(GateRefusedError, match="purpose"):
        admit(
            north, MemberDataUse(purpose=Purpose.PROPENSITY_MODEL, at=AT, policy=_policy(Purpose.CHURN_MODEL))
        )
    with pytest.raises(GateRefusedError, match="does not name carepl"):
        gated_matching_set(
            north, purpose=Purpose.CROSS_BRAND_MATCHING, recipient="carepl", at=AT, id_column="phone",
            secret=SECRET, policy=_policy(Purpose.CROSS_BRAND_MATCHING),
        )  # fmt: skip
