"""The coordinator's control-plane service (FastAPI under ``/api/v1``)."""

from coordinator.service.app import API_PREFIX, create_app
from coordinator.service.settings import CoordinatorSettings

__all__ = ["API_PREFIX", "CoordinatorSettings", "create_app"]
