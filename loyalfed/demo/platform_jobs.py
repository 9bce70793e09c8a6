"""The demo's jobs on the deployment engine: a loopback federation, signed policies, jobs through
the API, model cards and weights from the registry.

``run_platform_jobs`` starts a coordinator and one node per partner (``LoopbackFederation``), has
the analyst draft one policy per purpose and every partner's officer sign it, submits the jobs,
waits for them and reads each model (card and weights) back from the coordinator's registry, as
an analyst would. Every process is stopped before it returns. A ``lineage`` sink (the demo's audit
log) receives each drafted policy, each officer's signed approval and each job start as it happens.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loyalfed.demo.job_policies import training_policy_document
from loyalfed.demo.loopback_federation import FederationError, LoopbackFederation, PartnerSeat
from policies.policy import parse_policy
from policies.purpose import Purpose, purpose_of_training_task
from protocol import ModelCard

__all__ = ["PlatformJob", "run_platform_jobs"]

_DONE = {"finished", "failed", "stopped"}
Lineage = Callable[..., None]  # (event_type, **fields): ``DemoContext.record_lineage``'s shape


def _no_lineage(_event_type: str, **_fields: Any) -> None:
    return None


@dataclass(frozen=True)
class PlatformJob:
    """One finished job: the coordinator's record, the registry's card and the weights' file."""

    job: dict[str, Any]
    policy: dict[str, Any]
    card: ModelCard
    weights: Path


def _download(federation: LoopbackFederation, model_id: str, out: Path) -> Path:
    response = httpx.get(
        f"{federation.url}/api/v1/models/{model_id}/download",
        headers={"Authorization": f"Bearer {federation.tokens['analyst']}"},
        verify=str(federation.ca_file),
        timeout=60,
    )
    if response.status_code != 200:
        raise FederationError(f"model {model_id} download: HTTP {response.status_code}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(response.content)
    return out


def _signed_policies(
    federation: LoopbackFederation, purposes: set[Purpose], partners: list[str], lineage: Lineage
) -> dict[Purpose, dict[str, Any]]:
    policies = {}
    for purpose in sorted(purposes):
        document = training_policy_document(purpose, partners)
        policy = policies[purpose] = federation.draft_policy(document)
        common = {"purpose": purpose.value, "policy_hash": policy["hash"]}
        categories = sorted(parse_policy(document, source=policy["policy_id"]).data_categories)
        lineage(
            "policy.drafted", actor="analyst", role="analyst", partners=partners, categories=categories,
            details={"version": policy["version"], "partners": len(partners)}, **common,
        )  # fmt: skip
        for partner in partners:
            federation.decide(partner, policy)
            lineage(
                "policy.approved", actor=f"data_officer:{partner}", role="data_officer", partner=partner,
                **common,
            )  # fmt: skip
    return policies


def run_platform_jobs(
    root: Path,
    seats: Sequence[PartnerSeat],
    specs: Sequence[dict[str, Any]],
    *,
    models_dir: Path,
    progress: Callable[[str], None] = lambda _line: None,
    lineage: Lineage = _no_lineage,
    timeout_s: float = 600.0,
) -> list[PlatformJob]:
    """Run ``specs`` (JobSpec fields without the policy) on a fresh loopback federation in ``root``.

    ``timeout_s`` bounds the start-up and each job's wait (a busy machine needs more than a quiet one).
    """
    if root.exists():
        shutil.rmtree(root)  # a fresh federation per run: new keys, new tokens, new database
    partners = sorted(seat.partner_id for seat in seats)
    with LoopbackFederation(root, seats, progress=progress) as federation:
        federation.start(timeout_s=timeout_s)
        purposes = {purpose_of_training_task(str(spec["task"])) for spec in specs}
        policies = _signed_policies(federation, purposes, partners, lineage)
        progress(f"each data officer signed {len(policies)} policies with their own key")
        submitted = []
        for spec in specs:
            policy = policies[purpose_of_training_task(str(spec["task"]))]
            refs = {
                "policy_id": policy["policy_id"],
                "policy_version": policy["version"],
                "policy_hash": policy["hash"],
            }
            submitted.append((job_id := federation.submit({**spec, **refs}), policy))
            lineage(
                "job.started", actor="analyst", role="analyst", job_id=job_id, partners=partners,
                policy_hash=policy["hash"], purpose=purpose_of_training_task(str(spec["task"])).value,
                epsilon=spec.get("epsilon"), details={"rounds": spec.get("rounds")},
            )  # fmt: skip
            progress(f"the analyst submitted the {spec['task']} job through the API")
        results = []
        for job_id, policy in submitted:
            job = federation.wait_job(job_id, states=_DONE, timeout_s=timeout_s)
            if job["state"] != "finished":
                raise FederationError(f"job {job_id} {job['state']}: {job.get('reason')}")
            model = federation.api("analyst", "GET", f"/models/{job['model_id']}")
            card = ModelCard.model_validate(model["card"])
            weights = _download(federation, job["model_id"], models_dir / card.task / "model.pt")
            progress(f"{card.task}: job {job_id} finished; model {job['model_id']} read from the registry")
            results.append(PlatformJob(job=job, policy=policy, card=card, weights=weights))
    return results
