"""Errors of federated jobs: refusals before training and failures during it."""

from __future__ import annotations

from coordinator.errors import CoordinatorError

__all__ = ["BudgetExceededError", "JobConfigError", "JobFailedError", "JobRefusedError", "JobStoppedError"]


class JobConfigError(CoordinatorError):
    """A job's configuration is invalid; the message names the field."""


class JobRefusedError(CoordinatorError):
    """The coordinator refuses to start (or continue) a job; nothing was trained after this."""


class BudgetExceededError(JobRefusedError):
    """The job would take a partner dataset past its yearly privacy-budget cap."""


class JobFailedError(CoordinatorError):
    """A job could not complete, for example because too few nodes answered a round."""


class JobStoppedError(JobFailedError):
    """The job was stopped on request between two rounds; what the nodes spent is settled."""
