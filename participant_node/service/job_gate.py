"""The node as the enforcement point: before a job step touches member data, the node itself checks

(a) that its own data officer signed an approval of the exact content hash of the job's policy,
    verified with the officer keys configured on this node (``policies.signed_approval``), the newest
    decision it has seen for that hash (an older one cannot be replayed over a later rejection),
    and that the job fits the policy (purpose, partner, ε and δ within the policy's cap);
(b) its own privacy accountant: the job's ε target plus what other jobs spent on this dataset in
    the same calendar year stays within the node's yearly cap (basic composition across jobs,
    Dwork and Roth §3.5, an upper bound of the RDP figure);
(c) the consent gate (``participant_node.consent.node_gate.select_members``, the node gate's rules
    on consent, recipient scope, withdrawal and erasure, and borders): at least k members with valid
    consent to the policy's purpose. The job engine's data loading then passes the whole gate.

The coordinator checks too, for early refusal; the node never relies on its word. A failed check
raises ``JobRefusedError`` with a reason that names the rule and never member data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from participant_node.consent.node_gate import GateRefusedError, MemberDataUse, select_members
from participant_node.data import PartnerData, fingerprint_partner, load_partner
from participant_node.errors import NodeError
from participant_node.service.errors import JobRefusedError
from participant_node.training.privacy_accountant import NodePrivacyAccountant
from policies.approval import ApprovalDecision
from policies.consent_filter import ConsentSelection
from policies.errors import PolicyError
from policies.policy import DataUsePolicy
from policies.purpose import Purpose
from policies.signed_approval import (
    DecisionHistory,
    DecisionStatement,
    SignatureRejectedError,
    SignedDecision,
)

__all__ = ["Admission", "JobClaims", "JobGate", "PolicySource"]

PolicySource = Callable[[str, int], DataUsePolicy]  # (policy_id, version) -> the policy document


@dataclass(frozen=True)
class JobClaims:
    """What a job message claims about itself; the gate believes none of it without checking."""

    job_id: str
    purpose: str
    epsilon: float
    delta: float
    k_min: int
    policy_id: str | None
    policy_version: int | None
    policy_hash: str | None
    decisions: tuple[SignedDecision, ...]
    flower_app: str | None = None  # the FAB sha256 of the app that brought the message, if known


@dataclass(frozen=True)
class Admission:
    """A job the node admitted: the verified policy and decision, and the gated data."""

    policy: DataUsePolicy
    decision: DecisionStatement
    selection: ConsentSelection
    data_fingerprint: str


class JobGate:
    """The node's three checks, in order; state (decision history) lives in ``state``.

    Parameters
    ----------
    partner_id, partner_dir
        Which partner this node is and where its data lives.
    officer_keys
        The partner's data officers' public keys, configured locally.
    accountant_path
        The node's privacy accountant file (``NodePrivacyAccountant``).
    policy_source
        Fetches a policy document by id and version (from the coordinator); its hash is checked here.
    yearly_cap
        The node's yearly ε cap per dataset.
    now
        The clock (UTC), injectable for tests.
    """

    def __init__(
        self,
        *,
        partner_id: str,
        partner_dir: Path,
        state: Path,
        officer_keys: Sequence[Ed25519PublicKey],
        policy_source: PolicySource,
        yearly_cap: float,
        region: str = "CN",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not officer_keys:
            raise ValueError("a node needs at least one data officer public key")
        self.partner_id, self.partner_dir, self.state = partner_id, partner_dir, state
        self._keys = tuple(officer_keys)
        self._policy_source = policy_source
        self.yearly_cap, self.region, self._now = yearly_cap, region, now
        self._policies: dict[str, DataUsePolicy] = {}
        self._data: tuple[str, PartnerData] | None = None
        self._history_path = state / "officer_decisions.json"
        self._history = _load_history(self._history_path)

    @property
    def accountant(self) -> NodePrivacyAccountant:
        return NodePrivacyAccountant(self.state / "privacy_accountant.json")

    def admit(self, claims: JobClaims) -> Admission:
        """Run (a), (b), (c); return the admission or raise ``JobRefusedError``."""
        policy = self._policy(claims)
        decision = self._officer_decision(claims, policy)
        self._check_budget(claims)
        fingerprint, selection = self._consented(policy, claims.k_min)
        return Admission(policy=policy, decision=decision, selection=selection, data_fingerprint=fingerprint)

    def refuse(self, reason: str) -> JobRefusedError:
        return JobRefusedError(self.partner_id, reason)

    def _policy(self, claims: JobClaims) -> DataUsePolicy:
        if not claims.policy_id or claims.policy_version is None or not claims.policy_hash:
            raise self.refuse("the job names no policy (id, version and hash are required)")
        policy = self._policies.get(claims.policy_hash)
        if policy is None:
            try:
                policy = self._policy_source(claims.policy_id, claims.policy_version)
            except (PolicyError, NodeError) as err:
                raise self.refuse(
                    f"policy {claims.policy_id} v{claims.policy_version} unavailable: {err}"
                ) from err
            # The signature binds to the hash; the document is only trusted if it hashes to it.
            if policy.content_hash() != claims.policy_hash:
                raise self.refuse(
                    f"policy {claims.policy_id} v{claims.policy_version} does not match its hash"
                )
            self._policies[claims.policy_hash] = policy
        if self.partner_id not in policy.partners:
            raise self.refuse(f"policy {policy.policy_id} does not name partner {self.partner_id}")
        if claims.purpose != policy.purpose.value:
            raise self.refuse(
                f"the job's purpose {claims.purpose} is not the policy's {policy.purpose.value}"
            )
        if policy.flower_apps and claims.flower_app not in policy.flower_apps:
            # The officer approved the policy with the code that may run under it (its flower_apps).
            running = f"Flower App sha256 {claims.flower_app}" if claims.flower_app else "an unnamed app"
            raise self.refuse(
                f"the job runs {running}, not an app policy {policy.policy_id} approves "
                f"({len(policy.flower_apps)} named)"
            )
        if claims.epsilon > policy.privacy.epsilon or claims.delta > policy.privacy.delta:
            raise self.refuse(
                f"the job's (ε={claims.epsilon:g}, δ={claims.delta:g}) exceeds the policy's cap "
                f"(ε={policy.privacy.epsilon:g}, δ={policy.privacy.delta:g})"
            )
        return policy

    def _officer_decision(self, claims: JobClaims, policy: DataUsePolicy) -> DecisionStatement:
        assert claims.policy_hash is not None  # _policy refused a job without one
        verified: list[DecisionStatement] = []
        for signed in claims.decisions:
            try:
                verified.append(
                    signed.verify_for(self._keys, policy_hash=claims.policy_hash, partner_id=self.partner_id)
                )
            except SignatureRejectedError:
                continue  # another partner's decision, or a forgery: neither approves for this node
        if not verified:
            raise self.refuse(
                f"no decision signed by this partner's data officer on policy {policy.policy_id} "
                f"hash {claims.policy_hash[:12]}"
            )
        newest = max(verified, key=lambda s: s.signed_at)
        try:
            accepted = self._history.accept(newest)
        except PolicyError as err:
            raise self.refuse(f"officer decision refused: {err}") from err
        _save_history(self._history_path, self._history)
        if accepted.decision is not ApprovalDecision.APPROVED:
            raise self.refuse(f"this partner's data officer rejected policy {policy.policy_id}")
        return accepted

    def _check_budget(self, claims: JobClaims) -> None:
        year = self._now().year
        accountant = self.accountant
        spent = 0.0
        for job_id in _jobs_in_year(accountant, self.partner_id, year) - {claims.job_id}:
            spent += _job_epsilon(accountant, self.partner_id, job_id)
        if spent + claims.epsilon > self.yearly_cap * (1 + 1e-9):
            raise self.refuse(
                f"yearly privacy budget: {spent:.3f} of ε={self.yearly_cap:g} spent in {year}; "
                f"the job's ε={claims.epsilon:g} does not fit"
            )

    def _consented(self, policy: DataUsePolicy, k_min: int) -> tuple[str, ConsentSelection]:
        fingerprint = fingerprint_partner(self.partner_dir)
        if self._data is None or self._data[0] != fingerprint:
            self._data = (fingerprint, load_partner(self.partner_dir))
        at = self._now().astimezone(UTC).replace(tzinfo=None)
        use = MemberDataUse(purpose=policy.purpose, at=at, policy=policy, node_region=self.region)
        try:
            selection, _crosses = select_members(self._data[1], use)
        except GateRefusedError as err:
            raise self.refuse(f"consent gate: {err}") from err
        k = max(k_min, policy.min_aggregation_k)
        count = len(selection.member_ids)
        if count < k:
            raise self.refuse(
                f"consent gate: {count} members consented to {policy.purpose.value}; k={k} needed"
            )
        return fingerprint, selection


def _jobs_in_year(accountant: NodePrivacyAccountant, dataset: str, year: int) -> set[str]:
    return {
        entry.job_id
        for purpose in Purpose
        for entry in accountant.entries(dataset=dataset, purpose=purpose.value)
        if datetime.fromisoformat(entry.recorded_at).year == year
    }


def _job_epsilon(accountant: NodePrivacyAccountant, dataset: str, job_id: str) -> float:
    for purpose in Purpose:
        entries = accountant.entries(dataset=dataset, purpose=purpose.value, job_id=job_id)
        if entries:
            return accountant.epsilon(
                dataset=dataset, purpose=purpose.value, delta=entries[0].delta, job_id=job_id
            )
    return 0.0


def _load_history(path: Path) -> DecisionHistory:
    history = DecisionHistory()
    if path.exists():
        raw = json.loads(path.read_text(encoding="utf-8"))
        for text in raw["latest"]:
            statement = DecisionStatement.parse(text.encode("utf-8"))
            history.latest[(statement.policy_hash, statement.partner_id)] = statement
        history.seen_nonces.update(raw["seen_nonces"])
    return history


def _save_history(path: Path, history: DecisionHistory) -> None:
    payload = {
        "version": 1,
        "latest": [s.canonical_bytes().decode("utf-8") for s in history.latest.values()],
        "seen_nonces": sorted(history.seen_nonces),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    tmp.replace(path)
