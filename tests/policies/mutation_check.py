"""Mutation check for docs/compliance.md: remove each rule's enforcement, expect its tests to fail.

Not collected by pytest (no ``test_`` prefix); run by hand after changing a rule:

    .venv/bin/python tests/policies/mutation_check.py [NAME ...]

Each mutation is applied to a copy of the tree in a temporary folder, never to the working tree.
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

SRC = pathlib.Path(__file__).resolve().parents[2]
M = [
    (
        "lawful_basis",
        "policies/policy.py",
        "if self.lawful_basis not in allowed_lawful_bases(jurisdiction):",
        "if False:",
        "tests/policies/test_policy.py",
        "lawful_basis",
    ),
    (
        "reconsent",
        "policies/consent_filter.py",
        "if query.granted_since is not None:",
        "if False:",
        "tests/participant_node/consent/test_node_gate.py",
        "reconsent",
    ),
    (
        "withdrawal_store",
        "policies/consent_filter.py",
        "if len(used_withdrawals):",
        "if False:",
        "tests/participant_node/consent/test_consented_members.py",
        "withdrawal",
    ),
    (
        "scope",
        "policies/consent_filter.py",
        "rows &= _scope_mask(consents, query.recipient)",
        "pass",
        "tests/participant_node/consent/test_consented_members.py",
        "scope",
    ),
    (
        "sensitive_node",
        "policies/consent_filter.py",
        "if query.sensitive:",
        "if False:",
        "tests/participant_node/consent/test_consented_members.py",
        "sensitive",
    ),
    (
        "sensitive_policy",
        "policies/policy.py",
        "if is_sensitive(category) and not sensitive:",
        "if False:",
        "tests/policies/test_policy.py",
        "sensitive",
    ),
    (
        "minors",
        "policies/consent_filter.py",
        "selected[minor_rows[~has_guardian.to_numpy(zero_copy_only=False)]] = False",
        "pass",
        "tests/participant_node/consent/test_consented_members.py",
        "minor",
    ),
    (
        "minimisation",
        "participant_node/consent/node_gate.py",
        "keep = [c for c in frame.columns if c in allowed]",
        "keep = list(frame.columns)",
        "tests/participant_node/consent/test_node_gate.py",
        "minimisation",
    ),
    (
        "minimisation_eval",
        "policies/evaluation.py",
        "extra = sorted(set(columns) - set(policy.columns.get(table, ())))",
        "extra = []",
        "tests/policies/test_evaluation.py",
        "minimisation",
    ),
    (
        "purpose",
        "policies/consent_filter.py",
        'purpose = pc.equal(_as_arrow(consents["purpose"]), query.purpose.value)',
        'purpose = pc.not_equal(_as_arrow(consents["member_id"]), "")',
        "tests/participant_node/consent/test_consented_members.py",
        "purpose_limitation",
    ),
    (
        "retention",
        "policies/retention.py",
        'old = ~np.isnat(moments) & (moments < np.datetime64(cutoff, "us"))',
        "old = np.zeros(len(frame), dtype=bool)",
        "tests/participant_node/consent/test_node_gate.py",
        "retention",
    ),
    (
        "erasure_exclusion",
        "policies/consent_filter.py",
        "selected &= ~erased",
        "pass",
        "tests/participant_node/consent/test_consented_members.py",
        "erased",
    ),
    (
        "erasure_deadline",
        "policies/jurisdiction.py",
        "return min(limits)",
        "return max(limits)",
        "tests/policies/test_jurisdiction.py",
        "erasure_deadline",
    ),
    (
        "access",
        "participant_node/consent/subject_rights.py",
        "export[kind.value] = rows",
        "export[kind.value] = []",
        "tests/participant_node/consent/test_subject_rights.py",
        "access",
    ),
    (
        "impact_assessment",
        "policies/approval.py",
        "        if triggers:",
        "        if False:",
        "tests/policies/test_approval_rules.py",
        "impact_assessment",
    ),
    (
        "automated",
        "policies/policy.py",
        "if self.automated_decisions and not self.automated_decision_opt_out:",
        "if False:",
        "tests/policies/test_policy.py",
        "automated",
    ),
    (
        "jha",
        "policies/approval.py",
        "if len(policy.partners) > 1 and not policy.joint_handling_agreement:",
        "if False:",
        "tests/policies/test_approval_rules.py",
        "joint_handling",
    ),
    (
        "records",
        "coordinator/approvals/records.py",
        'totals["jobs"][digest] += 1',
        "pass",
        "tests/coordinator/approvals/test_registry_and_gate.py",
        "records",
    ),
    (
        "cross_border_node",
        "participant_node/consent/node_gate.py",
        "if crosses and not policy.cross_border.allowed:",
        "if False:",
        "tests/participant_node/consent/test_node_gate.py",
        "cross_border",
    ),
    (
        "cross_border_consent",
        "policies/consent_filter.py",
        "if query.cross_border:",
        "if False:",
        "tests/participant_node/consent/test_consented_members.py",
        "cross_border",
    ),
    (
        "approval_gate",
        "coordinator/approvals/gate.py",
        "if not status.approved:",
        "if False:",
        "tests/coordinator/approvals/test_registry_and_gate.py",
        "refused or rejection",
    ),
    (
        "voids",
        "policies/approval.py",
        "(a for a in approvals if a.policy_hash == policy_hash and a.partner in states)",
        "(a for a in approvals if a.partner in states)",
        "tests/policies/test_approval_rules.py",
        "voids",
    ),
    (
        "roles_partner",
        "policies/roles.py",
        "return partner is not None and actor.partner == partner",
        "return True",
        "tests/policies/test_roles.py",
        "partner",
    ),
    (
        "roles_matrix",
        "policies/roles.py",
        "if action not in PERMISSIONS[actor.role]:",
        "if False:",
        "tests/policies/test_roles.py",
        "matrix",
    ),
    (
        "expiry",
        "policies/consent_filter.py",
        "rows &= np.isnat(moment) | (moment > at)",
        "pass",
        "tests/participant_node/consent/test_consented_members.py",
        "expired or withdrawal_in_consents_file",
    ),
]


def main() -> None:
    only = sys.argv[1:]
    survived = 0
    for name, path, old, new, tests, k in M:
        if only and name not in only:
            continue
        work = pathlib.Path(tempfile.mkdtemp(prefix="loyalfed-mutation-"))
        for pkg in (
            "policies",
            "participant_node",
            "coordinator",
            "loyalfed",
            "psi",
            "audit",
            "models",
            "tests",
            "docs",
        ):
            shutil.copytree(SRC / pkg, work / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(SRC / "pyproject.toml", work / "pyproject.toml")
        f = work / path
        text = f.read_text()
        if text.count(old) != 1:
            print(f"{name}: PATTERN NOT FOUND ({text.count(old)})")
            survived += 1
            continue
        f.write_text(text.replace(old, new))
        r = subprocess.run(
            [
                str(SRC / ".venv/bin/python"),
                "-m",
                "pytest",
                tests,
                "-q",
                "-x",
                "-k",
                k,
                "-p",
                "no:cacheprovider",
            ],
            cwd=work,
            capture_output=True,
            text=True,
        )
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
        survived += r.returncode != 1
        print(
            f"{name}: {'KILLED' if r.returncode == 1 else 'SURVIVED rc=' + str(r.returncode)} | {last}",
            flush=True,
        )
        shutil.rmtree(work)
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
