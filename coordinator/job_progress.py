"""How a running job reports to whoever launched it: a sink the job runner calls as it goes.

The CLI prints rounds, the coordinator service stores them (round, nodes answered, ε spent so far,
the pooled metrics) and shows refusals, and can ask the job to stop between rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from coordinator.job_outcome import RoundReport
from protocol import PrivacySpentReply, Refusal

__all__ = ["JobProgress", "NoProgress", "RoundCallback", "on_rounds"]

RoundCallback = Callable[[RoundReport], None]


class JobProgress(Protocol):
    """What the job runner tells its launcher; every method is called from the ServerApp's thread."""

    def round_finished(self, report: RoundReport) -> None:
        """A training round ended (and, on evaluation rounds, was evaluated)."""

    def node_refused(self, job_id: str, refusal: Refusal) -> None:
        """A node refused the job; the job fails with the node's reason right after."""

    def budget_settled(self, job_id: str, spent: dict[str, PrivacySpentReply]) -> None:
        """The ledger was settled from what each answering node's accountant spent."""

    def stop_requested(self, job_id: str) -> bool:
        """True to stop the job before its next round (it then fails as stopped, settled)."""


class NoProgress:
    """A sink that ignores everything and never stops the job; subclass it to keep a few calls."""

    def round_finished(self, report: RoundReport) -> None:
        return None

    def node_refused(self, job_id: str, refusal: Refusal) -> None:
        return None

    def budget_settled(self, job_id: str, spent: dict[str, PrivacySpentReply]) -> None:
        return None

    def stop_requested(self, job_id: str) -> bool:
        return False


class _RoundCallbackProgress(NoProgress):
    def __init__(self, on_round: RoundCallback) -> None:
        self._on_round = on_round

    def round_finished(self, report: RoundReport) -> None:
        self._on_round(report)


def on_rounds(on_round: RoundCallback | None) -> JobProgress:
    """A sink that calls ``on_round`` with each finished round (or ignores everything)."""
    return NoProgress() if on_round is None else _RoundCallbackProgress(on_round)
