"""The control plane's domain errors; the API's error table maps each to an HTTP status.

Messages are public: they name the resource and the rule, never a request body or a secret.
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotAuthenticatedError",
    "NotFoundError",
    "PlatformError",
]


class PlatformError(CoordinatorError):
    """Root of the control plane's errors."""


class NotAuthenticatedError(PlatformError):
    """No credential, or one the coordinator does not know (revoked, mistyped)."""


class ForbiddenError(PlatformError):
    """A known principal may not take this action (role or organisation)."""


class NotFoundError(PlatformError):
    """The named resource does not exist."""


class ConflictError(PlatformError):
    """The request contradicts the current state (a duplicate, a finished job, a replayed nonce)."""


class InvalidRequestError(PlatformError):
    """The request is well-formed JSON but breaks a domain rule (named in the message)."""
