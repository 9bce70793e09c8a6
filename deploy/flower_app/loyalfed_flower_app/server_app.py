"""The coordinator's ServerApp (coordinator.deployment_app), as the SuperLink loads it."""

from coordinator.deployment_app import app

__all__ = ["app"]
