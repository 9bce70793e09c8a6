"""What a node releases about its held-out members: its evaluation vector, under DP where needed.

The node scores its held-out members and counts them on the job's public layout
(``protocol.EvaluationLayout``: the fine score grid, overall and per demographic group). Per-member
scores never leave the node. The vector is released

* masked, under secure aggregation: the coordinator learns only the federation's sum. With the
  job's ``evaluation_epsilon`` at 0 the sum is exact; above 0 each node adds its share of the noise
  (``protocol.release_noise``);
* in clear otherwise, and then only under (ε, δ)-DP: Gaussian noise on every count, calibrated by
  the node's own accountant for all the job's planned evaluations (RDP composition of Gaussian
  releases at sampling rate 1), with the score sums withheld (their sensitivity would be spent on
  calibration means, which bin centres estimate well enough).

A noisy release asked again with the same exact counts (a model that did not move, an early-stopping
check) gets the same noisy answer back, at no further charge: it is a copy of a past release, pure
post-processing (Dwork & Roth 2014, Prop. 2.1), and fresh noise would let the coordinator average it
away. The node keeps its last release per job for that, in its own state folder.

The charge goes to the node's HELD-OUT members (dataset ``<partner>#heldout``): they never train in
any job (``models.heldout_mask`` is a fixed function of the member id), so their ε composes in
parallel with the training members' (McSherry, "Privacy Integrated Queries", SIGMOD 2009, Thm. 4):
a member's ε for the job is the larger of the two, which ``query.privacy_spent`` reports.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from models.metrics import roc_auc
from participant_node.private_state import private_directory, write_private_file
from participant_node.training.errors import TrainingError
from participant_node.training.local_task_data import LocalTaskData
from participant_node.training.privacy_accountant import (
    NodePrivacyAccountant,
    calibrate_noise_multiplier,
    effective_delta,
)
from protocol import (
    EvaluationLayout,
    EvaluationReply,
    JobSpec,
    NodeRecord,
    ReleaseNoise,
    release_epsilon,
    release_noise,
)

__all__ = ["heldout_dataset", "release_heldout_evaluation"]


def heldout_dataset(partner_id: str) -> str:
    """The accountant's dataset name of a partner's held-out members."""
    return f"{partner_id}#heldout"


def _charge(
    accountant: NodePrivacyAccountant, spec: JobSpec, partner_id: str, n: int, *, secure: bool
) -> float:
    """Charge one release to the held-out members; the noise multiplier (0: an exact release)."""
    epsilon = release_epsilon(spec, secure=secure)
    if epsilon <= 0:
        return 0.0
    delta = effective_delta(spec.delta, n)
    multiplier = calibrate_noise_multiplier(
        epsilon=epsilon, delta=delta, sample_rate=1.0, steps=spec.evaluations_planned
    )
    accountant.charge(
        dataset=heldout_dataset(partner_id),
        purpose=spec.purpose,
        job_id=spec.job_id,
        noise_multiplier=multiplier,
        sample_rate=1.0,
        steps=1,
        delta=delta,
        epsilon_cap=epsilon,
    )
    return multiplier


def _noised(
    vector: np.ndarray, layout: EvaluationLayout, noise: ReleaseNoise, rng: np.random.Generator
) -> np.ndarray:
    """Counts plus N(0, σ²) each; score sums and scalars withheld (zeros) from a noisy release."""
    out = np.zeros_like(vector)
    for start in range(0, layout.length, layout.block):
        counts = slice(start, start + 2 * layout.bins)
        out[counts] = vector[counts] + rng.normal(0.0, noise.sigma, 2 * layout.bins)
    return out


def _digest(spec: JobSpec, layout: EvaluationLayout, exact: np.ndarray, *, secure: bool) -> str:
    key = f"{spec.job_id}|{layout.to_wire()}|{secure}|".encode() + exact.tobytes()
    return hashlib.sha256(key).hexdigest()


def _cached(path: Path | None, digest: str) -> tuple[np.ndarray, float] | None:
    if path is None or not path.exists():
        return None
    with np.load(path) as stored:
        if str(stored["digest"]) != digest:
            return None
        return stored["vector"], float(stored["sigma"])


def _keep(path: Path | None, digest: str, vector: np.ndarray, sigma: float) -> None:
    if path is None:
        return
    private_directory(path.parent)
    buffer = io.BytesIO()
    np.savez(buffer, digest=np.asarray(digest), vector=vector, sigma=np.asarray(sigma))
    write_private_file(path, buffer.getvalue())


def release_heldout_evaluation(
    model: torch.nn.Module,
    data: LocalTaskData,
    spec: JobSpec,
    layout: EvaluationLayout,
    *,
    node: NodeRecord,
    accountant: NodePrivacyAccountant,
    secure: bool,
    release_file: Path | None = None,
    rng: np.random.Generator | None = None,
) -> EvaluationReply:
    """Score the held-out members and build the reply (charging the accountant first if noisy).

    ``release_file`` keeps the job's last noisy release at the node (see the module docstring).
    """
    labels = data.heldout.y.astype(np.float64)
    if len(labels) < spec.k_min:
        raise TrainingError(f"only {len(labels)} held-out members; evaluation needs at least k={spec.k_min}")
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(data.heldout.X))).numpy().astype(np.float64).ravel()
    vector = layout.vector(labels, scores, data.heldout.groups)
    digest = _digest(spec, layout, vector, secure=secure)
    cached = _cached(release_file, digest) if release_epsilon(spec, secure=secure) > 0 else None
    if cached is not None:
        vector, sigma = cached
    else:
        multiplier = _charge(accountant, spec, node.partner_id, len(labels), secure=secure)
        noise = release_noise(spec, layout, secure=secure, noise_multiplier=multiplier)
        sigma = noise.sigma
        if noise.is_noisy:
            vector = _noised(vector, layout, noise, rng or np.random.default_rng())
            _keep(release_file, digest, vector, sigma)
    return EvaluationReply(
        node=node,
        num_examples=len(labels),
        brier=float(np.mean((scores - labels) ** 2)),
        # The exact AUC over all (>= k) held-out members, when both labels occur.
        auc=float(roc_auc(labels, scores)) if 0 < labels.sum() < len(labels) else None,
        noise_sigma=sigma,
        vector=vector,
    )
