"""A per-organisation compose file resolved by a real Compose client, and the binds it declares.

Compose resolves the file (variables, relative paths) exactly as it would on the organisation's
host; the tests then read every bind mount and named volume from the resolved configuration.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

__all__ = ["Mount", "compose_command", "mounts", "resolve"]

# Debian's docker-compose is a Python program of the system's interpreter: give it a plain
# environment, so nothing this test process inherited (a venv, PYTHON* variables) leaks into it.
_SYSTEM_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Mount:
    """One service's volume: a bind (``source`` a host path) or a named volume (``source`` its name)."""

    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith(("/", "."))


def compose_command() -> list[str]:
    """``docker-compose`` or ``docker compose``; the calling test is skipped when neither exists."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = (
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if shutil.which("docker")
        else None
    )
    if probe is not None and probe.returncode == 0:
        return ["docker", "compose"]
    pytest.skip("no Compose client (docker-compose or the docker compose plugin) on this machine")


def resolve(folder: Path, settings: Mapping[str, str]) -> dict[str, object]:
    """``folder/compose.yaml`` resolved with ``.env.example``'s settings, ``settings`` overriding them.

    Writes ``folder/.env`` as the organisation's operator would (copy the example, then edit).
    """
    lines = []
    for line in (folder / ".env.example").read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={settings[key]}" if key in settings else line)
    (folder / ".env").write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [*compose_command(), "--env-file", ".env", "-f", "compose.yaml", "config"],
        cwd=folder,
        env=_SYSTEM_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def mounts(config: Mapping[str, object]) -> dict[str, list[Mount]]:
    """Every volume of every service, per service.

    docker-compose v1 prints ``source:target:mode`` strings, the v2 plugin mappings; both are read.
    """
    found: dict[str, list[Mount]] = {}
    services = config["services"]
    assert isinstance(services, dict)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source, target, *mode = volume.split(":")
                found.setdefault(name, []).append(Mount(source, target, mode == ["ro"]))
            else:
                read_only = bool(volume.get("read_only"))
                found.setdefault(name, []).append(
                    Mount(str(volume.get("source")), str(volume.get("target")), read_only)
                )
    return found
