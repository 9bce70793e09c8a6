"""The node's own privacy accountant: DP-SGD steps taken per dataset and purpose, and ε spent.

Each node accounts for itself and never trusts the coordinator's arithmetic: it calibrates the
noise multiplier of a job from the job's target (ε, δ), records every local step it takes in a
history of (σ, q, steps) as Opacus does, and refuses a step that would take the job past its
target. The RDP analysis of the sampled Gaussian mechanism is Opacus's (Mironov, Talwar and Zhang,
"Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019); composition across jobs on
the same dataset and purpose is RDP composition of the whole history.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from participant_node.private_state import private_directory, write_private_file
from participant_node.training.errors import PrivacyBudgetError

__all__ = [
    "AccountantEntry",
    "NodePrivacyAccountant",
    "calibrate_noise_multiplier",
    "effective_delta",
    "rdp_epsilon",
]


def effective_delta(delta: float, n_members: int) -> float:
    """Return the δ a node uses: the job's δ, but never above 1/n for a dataset of n members.

    A δ of the order of 1/n allows the mechanism to publish one member's record outright
    (Dwork and Roth, "The Algorithmic Foundations of Differential Privacy", §2.3).
    """
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if n_members < 1:
        raise ValueError(f"n_members must be positive, got {n_members}")
    return min(delta, 1.0 / n_members)


def rdp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` Poisson-sampled Gaussian steps, by Opacus's RDP accountant."""
    if steps == 0:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return float(accountant.get_epsilon(delta=delta))


# Pure in its arguments; every round of a job asks again. One simulation worker serves hundreds of
# virtual nodes in turn, each with its own sample rate: a cache smaller than that misses every time.
@functools.lru_cache(maxsize=8192)
def calibrate_noise_multiplier(*, epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier σ (to 0.01 in ε) whose ``steps`` steps stay within (ε, δ).

    Opacus's binary search always returns a σ whose ε is at or below the target, never above.
    """
    if epsilon <= 0.0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return float(
        get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant="rdp",
            epsilon_tolerance=0.005,
        )
    )


@functools.lru_cache(maxsize=8192)  # the train step charges, then the settlement asks the same history
def _composed_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """ε of ``history`` (σ, q, steps) at ``delta``, by Opacus's RDP accountant (pure: cached)."""
    accountant = RDPAccountant()
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta=delta))


def _compressed(history: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    # RDP composes additively, so entries with the same (σ, q) merge into one with summed steps.
    steps: dict[tuple[float, float], int] = {}
    for sigma, rate, count in history:
        steps[(sigma, rate)] = steps.get((sigma, rate), 0) + count
    return [(sigma, rate, count) for (sigma, rate), count in steps.items()]


@dataclass(frozen=True)
class AccountantEntry:
    """One batch of DP-SGD steps charged to a dataset and purpose."""

    dataset: str
    purpose: str
    job_id: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    recorded_at: str


class NodePrivacyAccountant:
    """History of DP-SGD steps per (dataset, purpose), optionally persisted to a JSON file.

    Parameters
    ----------
    path : Path or None
        Where the node keeps its history (its own storage, never shared). ``None`` keeps it in
        memory for the life of the process.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._entries: list[AccountantEntry] = []
        if path is not None and path.exists():
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._entries = [AccountantEntry(**item) for item in raw["entries"]]

    def entries(self, *, dataset: str, purpose: str, job_id: str | None = None) -> list[AccountantEntry]:
        """The recorded entries for a dataset and purpose (and one job if ``job_id`` is given)."""
        return [
            e
            for e in self._entries
            if e.dataset == dataset and e.purpose == purpose and (job_id is None or e.job_id == job_id)
        ]

    def steps_taken(self, *, dataset: str, purpose: str, job_id: str) -> int:
        return sum(e.steps for e in self.entries(dataset=dataset, purpose=purpose, job_id=job_id))

    def epsilon(self, *, dataset: str, purpose: str, delta: float, job_id: str | None = None) -> float:
        """ε spent on a dataset and purpose (or by one job) at ``delta``, by RDP composition."""
        history = [
            (e.noise_multiplier, e.sample_rate, e.steps)
            for e in self.entries(dataset=dataset, purpose=purpose, job_id=job_id)
        ]
        if not history:
            return 0.0
        return _composed_epsilon(tuple(_compressed(history)), delta)

    def charge(
        self,
        *,
        dataset: str,
        purpose: str,
        job_id: str,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        delta: float,
        epsilon_cap: float,
        now: datetime | None = None,
    ) -> float:
        """Record ``steps`` more steps of a job unless the job's ε would then exceed ``epsilon_cap``.

        Returns the job's ε after the charge. Raises ``PrivacyBudgetError`` (and records nothing)
        when the steps would overshoot: the node refuses to train rather than overspend.
        """
        entry = AccountantEntry(
            dataset=dataset,
            purpose=purpose,
            job_id=job_id,
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            delta=delta,
            recorded_at=(now or datetime.now(UTC)).isoformat(),
        )
        prior = [
            (e.noise_multiplier, e.sample_rate, e.steps)
            for e in self.entries(dataset=dataset, purpose=purpose, job_id=job_id)
        ]
        after = _composed_epsilon(tuple(_compressed([*prior, (noise_multiplier, sample_rate, steps)])), delta)
        # A 1% slack absorbs the binary search tolerance of the calibration, nothing more.
        if not math.isfinite(after) or after > epsilon_cap * 1.01:
            raise PrivacyBudgetError(
                f"dataset {dataset!r}, purpose {purpose}: job {job_id} would reach ε={after:.3f} "
                f"above its cap ε={epsilon_cap:.3f}; the node refuses to train further"
            )
        self._entries.append(entry)
        self._save()
        return after

    def _save(self) -> None:
        if self._path is None:
            return
        payload = {"version": 1, "entries": [asdict(e) for e in self._entries]}
        # Node state: a 0700 folder and a 0600 file, replaced atomically.
        private_directory(self._path.parent)
        write_private_file(self._path, json.dumps(payload, indent=1).encode("utf-8"))
