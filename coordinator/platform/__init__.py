"""The control plane's domain: service functions over the store, never importing FastAPI."""

from coordinator.platform.errors import PlatformError
from coordinator.platform.principals import Principal

__all__ = ["PlatformError", "Principal"]
