"""The per-organisation compose files: valid for a real Compose client, and each organisation's
containers see only that organisation's own key material (never the CA key, never another's key).

Compose resolves the files (variables, relative paths) exactly as it would on the host; the test
then reads every bind mount from the resolved configuration.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ORGANISATIONS = ("coordinator-org", "partner-org")
# Debian's docker-compose is a Python program of the system's interpreter: give it a plain
# environment, so nothing this test process inherited (a venv, PYTHON* variables) leaks into it.
_SYSTEM_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
FILLED = {"LOYALFED_NODE_TOKEN": "node-token-from-the-federation-administrator"}


def _compose_command() -> list[str]:
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


def _resolved(tmp_path: Path, organisation: str) -> dict[str, object]:
    folder = tmp_path / organisation
    shutil.copytree(DEPLOY / organisation, folder)
    lines = []
    for line in (folder / ".env.example").read_text().splitlines():
        key, _, value = line.partition("=")
        lines.append(f"{key}={FILLED.get(key, value)}" if key in FILLED else line)
    (folder / ".env").write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [*_compose_command(), "--env-file", ".env", "-f", "compose.yaml", "config"],
        cwd=folder,
        env=_SYSTEM_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def _mounts(config: dict[str, object]) -> dict[str, list[tuple[str, str, bool]]]:
    """(source, target, read-only) of every file or folder bind, per service.

    docker-compose v1 prints ``source:target:mode`` strings, the v2 plugin mappings; both are read.
    """
    mounts: dict[str, list[tuple[str, str, bool]]] = {}
    services = config["services"]
    assert isinstance(services, dict)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source, target, *mode = volume.split(":")
                read_only = mode == ["ro"]
            else:
                source, target = str(volume.get("source")), str(volume.get("target"))
                read_only = bool(volume.get("read_only"))
            if source.startswith(("/", ".")):
                mounts.setdefault(name, []).append((source, target, read_only))
    return mounts


@pytest.mark.parametrize("organisation", ORGANISATIONS)
def test_compose_accepts_each_organisations_file(tmp_path: Path, organisation: str) -> None:
    config = _resolved(tmp_path, organisation)
    assert config["services"]


def test_no_container_sees_another_organisations_private_key(tmp_path: Path) -> None:
    coordinator = _mounts(_resolved(tmp_path, "coordinator-org"))
    partner = _mounts(_resolved(tmp_path, "partner-org"))
    for mounts in (*coordinator.values(), *partner.values()):
        assert all(not source.endswith("ca.key") for source, _, _ in mounts), (
            "the CA key is never on a serving host"
        )
    coordinator_keys = {Path(s).name for m in coordinator.values() for s, _, _ in m if s.endswith(".key")}
    partner_keys = {Path(s).name for m in partner.values() for s, _, _ in m if s.endswith(".key")}
    assert coordinator_keys == {"coordinator.key"}
    assert partner_keys == {"node.key"}
    # Each organisation mounts only from its own folder (and the partner its own data, read-only).
    for source, _, _ in (m for mounts in coordinator.values() for m in mounts):
        assert str(tmp_path / "coordinator-org") in source
    for source, target, _ in (m for mounts in partner.values() for m in mounts):
        assert target == "/data" or str(tmp_path / "partner-org") in source


def test_every_bind_is_read_only_and_the_data_is_mounted_once(tmp_path: Path) -> None:
    for organisation in ORGANISATIONS:
        for mounts in _mounts(_resolved(tmp_path, organisation)).values():
            assert all(read_only for _, _, read_only in mounts), mounts
    partner = _mounts(_resolved(tmp_path / "again", "partner-org"))
    assert [t for m in partner.values() for _, t, _ in m].count("/data") == 1
