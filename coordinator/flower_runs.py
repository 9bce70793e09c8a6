"""Start, watch and stop Flower runs on the supervised SuperLink.

A run is submitted, read and stopped through the SuperLink's Control API from this process
(``superlink_control``: the requests ``flwr run``, ``flwr ls`` and ``flwr stop`` send, over HTTPS
verified against the SuperLink's root certificate). A ``flwr``
process per call cost 1.5–3 CPU seconds of imports and start-up, and ``flwr run`` 6–9 s of wall
per job on a busy machine; the in-process call costs milliseconds plus packaging the app.
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path

from coordinator.superlink_control import run_status as control_run_status
from coordinator.superlink_control import start_run, stop_run
from coordinator.superlink_supervisor import SuperLinkError, SuperLinkSupervisor

__all__ = ["FlowerRuns"]

_log = logging.getLogger("loyalfed.coordinator.runs")


class FlowerRuns:
    """Flower runs of the packaged loyalfed app on one supervised SuperLink."""

    def __init__(self, superlink: SuperLinkSupervisor, *, app_dir: Path, runs_dir: Path) -> None:
        self._superlink = superlink
        self.app_dir = app_dir
        self.runs_dir = runs_dir

    def declared_keys(self) -> set[str]:
        """The run-config keys the app declares (``[tool.flwr.app.config]``); the SuperLink refuses others."""
        try:
            project = tomllib.loads((self.app_dir / "pyproject.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SuperLinkError(f"{self.app_dir}: no readable Flower app pyproject.toml") from err
        config = project.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})
        return set(config) if isinstance(config, dict) else set()

    def launch(self, job_id: str, run_config_toml: str) -> str:
        """Submit the run; returns Flower's run id. The run config is also kept in the job's run
        folder as the record of what was submitted (0600: it holds the job token)."""
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
        with self._superlink.one_call_control() as client:
            run_id = start_run(client, self.app_dir, run_config_toml)
        _log.info("job %s: Flower run %s submitted", job_id, run_id)
        return run_id

    def status(self, run_id: str) -> str | None:
        """Flower's status text of the run (``running``, ``finished:completed``…), None if unknown."""
        return control_run_status(self._superlink.control(), run_id)

    def stop(self, run_id: str) -> None:
        with self._superlink.one_call_control() as client:
            stop_run(client, run_id)
