"""Start, watch and stop Flower runs on the supervised SuperLink through Flower's own CLI.

``flwr run APP_DIR coordinator --run-config FILE.toml --format json`` with ``FLWR_HOME`` under the
coordinator's state directory (its profile trusts the SuperLink's root certificate); ``flwr ls``
reads a run's status, ``flwr stop`` ends it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tomllib
from pathlib import Path

from coordinator.superlink_supervisor import CONNECTION_NAME, SuperLinkError, SuperLinkSupervisor, reply_json

__all__ = ["FlowerRuns"]

_log = logging.getLogger("loyalfed.coordinator.runs")


class FlowerRuns:
    """Flower runs of the packaged loyalfed app on one supervised SuperLink."""

    def __init__(self, superlink: SuperLinkSupervisor, *, app_dir: Path, runs_dir: Path) -> None:
        self._superlink = superlink
        self.app_dir = app_dir
        self.runs_dir = runs_dir

    def _flwr(self, *args: str, timeout_s: float = 120.0) -> dict[str, object]:
        binary = str(Path(self._superlink.environment()["PATH"].split(os.pathsep)[0]) / "flwr")
        result = subprocess.run(
            [binary, *args, "--format", "json"],
            env=self._superlink.environment(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        try:
            reply = reply_json(result.stdout)
        except SuperLinkError:
            _log.warning("flwr %s failed: %s", args[0], (result.stdout + result.stderr)[-2000:])
            raise
        if result.returncode != 0 or reply.get("success") is False:
            _log.warning("flwr %s failed: %s", args[0], (result.stdout + result.stderr)[-2000:])
            raise SuperLinkError(f"flwr {args[0]} failed")
        return reply

    def declared_keys(self) -> set[str]:
        """The run-config keys the app declares (``[tool.flwr.app.config]``); the SuperLink refuses others."""
        try:
            project = tomllib.loads((self.app_dir / "pyproject.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SuperLinkError(f"{self.app_dir}: no readable Flower app pyproject.toml") from err
        config = project.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})
        return set(config) if isinstance(config, dict) else set()

    def launch(self, job_id: str, run_config_toml: str) -> str:
        """Submit the run; returns Flower's run id. The config file (it holds the job token) is 0600."""
        missing = sorted(set(tomllib.loads(run_config_toml)) - self.declared_keys())
        if missing:
            # Flower's Control API validates overrides against the app's declared config keys.
            raise SuperLinkError(f"the Flower app at {self.app_dir} does not declare {', '.join(missing)}")
        folder = self.runs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / "run-config.toml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(run_config_toml)
        reply = self._flwr("run", str(self.app_dir), CONNECTION_NAME, "--run-config", str(path))
        run_id = reply.get("run-id")
        if not isinstance(run_id, str) or not run_id:
            raise SuperLinkError("flwr run returned no run id")
        return run_id

    def status(self, run_id: str) -> str | None:
        """Flower's status text of the run (``running``, ``finished:completed``…), None if unknown."""
        reply = self._flwr("ls", CONNECTION_NAME, "--run-id", run_id, timeout_s=60.0)
        runs = reply.get("runs")
        if isinstance(runs, list):
            for run in runs:
                if isinstance(run, dict) and run.get("run-id") == run_id:
                    status = run.get("status")
                    return status if isinstance(status, str) else None
        return None

    def stop(self, run_id: str) -> None:
        self._flwr("stop", run_id, CONNECTION_NAME, timeout_s=60.0)
