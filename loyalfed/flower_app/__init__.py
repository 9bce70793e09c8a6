"""The loyalfed Flower App: the directory ``flwr run`` builds the deployment engine's FAB from.

Its ``pyproject.toml`` names the ServerApp and ClientApp below, which are built by the same
factories the simulation uses (``coordinator.server_app``/``coordinator.deployment_app`` and
``participant_node.training.client_app``), so every engine runs the same apps.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["flower_app_dir"]


def flower_app_dir() -> Path:
    """The app directory to give ``flwr run`` (it holds the app's ``pyproject.toml``)."""
    return Path(__file__).resolve().parent
