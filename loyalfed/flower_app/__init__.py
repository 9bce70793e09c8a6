"""The loyalfed Flower App: the directory ``flwr run`` builds the deployment engine's FAB from.

Its ``pyproject.toml`` names the ServerApp and ClientApp below, which are built by the same
factories the simulation uses (``coordinator.server_app``/``coordinator.deployment_app`` and
``participant_node.training.client_app``), so every engine runs the same apps.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["flower_app_dir", "flower_app_hash"]


def flower_app_dir() -> Path:
    """The app directory to give ``flwr run`` (it holds the app's ``pyproject.toml``)."""
    return Path(__file__).resolve().parent


def flower_app_hash() -> str:
    """The sha256 of this app's FAB as ``flwr run`` builds it: what a node approves by default."""
    import hashlib

    from flwr.cli.build import build_fab_from_disk  # FAB entries carry a fixed date: deterministic

    return hashlib.sha256(build_fab_from_disk(flower_app_dir())).hexdigest()
