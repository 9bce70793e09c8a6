"""No job without an approved policy: refused before any partner's data is read.

"Before any data is read" is shown by making every partner's data unreadable: were anything read
first, the refusal would be the data error, not the policy's.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from coordinator.approvals import PolicyNotApprovedError, PolicyRegistry
from loyalfed.cli import main
from loyalfed.federated_run import JobPolicies, experiment_policies, run_federated_job, select_partners
from loyalfed.local_officers import approve_as_local_officers, experiment_policy, officers_dir_for
from participant_node.data import load_federation
from policies.purpose import Purpose
from policies.roles import Actor, Role
from protocol import JobSpec

JOB = JobSpec(epsilon=3.0, rounds=1)


@pytest.fixture
def unreadable_federation(cj_federation: Path, tmp_path: Path) -> Path:
    """The demo federation with every partner's member and transaction files replaced by garbage."""
    federation = tmp_path / "federation"
    shutil.copytree(cj_federation, federation)
    for partner in load_federation(federation).partners:
        for kind in ("members", "transactions"):
            for old in partner.path.glob(f"{kind}.*"):
                old.unlink()
            (partner.path / f"{kind}.csv").write_bytes(b"\xff\xfe not a table \x00\x01")
    return federation


def _stores(federation: Path) -> list[str]:
    return [p[0] for p in select_partners(load_federation(federation), None)]


def _draft(registry: Path, partners: list[str], **overrides: object) -> str:
    """Register the experiment churn policy (not yet approved by anyone); returns its ref."""
    policy = experiment_policy(Purpose.CHURN_MODEL, partners, **overrides)  # type: ignore[arg-type]
    book = PolicyRegistry.at_path(registry)
    try:
        return book.draft(policy, actor=Actor(Role.ANALYST)).ref
    finally:
        book.close()


def _loyalfed(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    """The real console entry point, in-process: its exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["loyalfed", *args])
    monkeypatch.setenv("COLUMNS", "400")  # Rich wraps stderr at the terminal width
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_train_without_an_approved_policy_exits_non_zero_before_reading_data(
    unreadable_federation: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    common = ["train", "--task", "churn", "--federation", str(unreadable_federation), "--epsilon", "3"]
    common += ["--out", str(tmp_path / "model"), "--ledger", str(tmp_path / "ledger.sqlite")]
    code, message = _loyalfed(common, capsys, monkeypatch)
    assert code == 2 and "--policy" in message
    registry = tmp_path / "registry.sqlite"
    ref = _draft(registry, _stores(unreadable_federation), regions=["CN"], epsilon=8.0, delta=1e-5)
    code, message = _loyalfed([*common, "--policy", ref, "--registry", str(registry)], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in message
    assert "is not approved" in message and "cannot be read" not in message
    assert not (tmp_path / "model").exists()
    assert not list(unreadable_federation.glob("*/.loyalfed/privacy_accountant.json"))


def test_every_partner_officers_signature_is_verified(unreadable_federation: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite"
    stores = _stores(unreadable_federation)
    ref = _draft(registry, stores, regions=["CN"], epsilon=8.0, delta=1e-5)
    officers = officers_dir_for(registry)
    book = PolicyRegistry.at_path(registry)
    try:
        registered = approve_as_local_officers(book, ref, officers_dir=officers)
    finally:
        book.close()
    policies = JobPolicies.one_for_all(registry, ref, [JOB])
    # Approved and signed by every store group: the job passes the gate and only then meets the data.
    with pytest.raises(Exception, match="cannot be read"):
        run_federated_job(unreadable_federation, JOB, policies=policies)
    # A forged decision for one partner (signed by another partner's key) is refused, vaguely.
    decision = officers / stores[0] / "decisions" / f"{registered.content_hash}.json"
    (officers / stores[0] / "officer.pub").write_bytes((officers / stores[1] / "officer.pub").read_bytes())
    with pytest.raises(
        PolicyNotApprovedError, match=f"partner {stores[0]}: the signed decision .* is not valid"
    ):
        run_federated_job(unreadable_federation, JOB, policies=policies)
    decision.unlink()
    with pytest.raises(
        PolicyNotApprovedError, match=f"partner {stores[0]}: no decision signed by its data officer"
    ):
        run_federated_job(unreadable_federation, JOB, policies=policies)


@pytest.mark.parametrize(
    ("overrides", "job", "refusal"),
    [
        ({"epsilon": 2.0, "delta": 1e-5, "regions": ["CN"]}, JOB, "privacy_budget"),
        ({"epsilon": 8.0, "delta": 1e-5, "regions": ["DE"]}, JOB, "cross_border"),
        (
            {"epsilon": 8.0, "delta": 1e-5, "regions": ["CN"]},
            JobSpec(task="propensity", epsilon=3.0),
            "purpose",
        ),
    ],
    ids=["epsilon-above-the-cap", "partner-region-outside-the-policy", "another-purpose"],
)
def test_a_job_that_does_not_fit_its_approved_policy_is_refused(
    unreadable_federation: Path, tmp_path: Path, overrides: dict[str, object], job: JobSpec, refusal: str
) -> None:
    registry = tmp_path / "registry.sqlite"
    ref = _draft(registry, _stores(unreadable_federation), **overrides)
    book = PolicyRegistry.at_path(registry)
    try:
        approve_as_local_officers(book, ref, officers_dir=officers_dir_for(registry))
    finally:
        book.close()
    with pytest.raises(PolicyNotApprovedError, match=refusal):
        run_federated_job(unreadable_federation, job, policies=JobPolicies.one_for_all(registry, ref, [job]))


def test_a_job_naming_no_policy_is_refused(unreadable_federation: Path, tmp_path: Path) -> None:
    policies = experiment_policies(unreadable_federation, [JOB], registry=tmp_path / "registry.sqlite")
    other = JobSpec(job_id="not-in-the-book", epsilon=3.0)
    with pytest.raises(PolicyNotApprovedError, match="job not-in-the-book names no data-use policy"):
        run_federated_job(unreadable_federation, other, policies=policies)
    assert json.loads(json.dumps(dict(policies.refs))) == {JOB.job_id: "experiment-churn-model@1"}
