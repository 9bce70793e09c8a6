"""The coordinator's ServerApp as the SuperLink loads it (``coordinator.deployment_app``)."""

from coordinator.deployment_app import app

__all__ = ["app"]
