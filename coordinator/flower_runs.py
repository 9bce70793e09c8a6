"""Start, watch and stop Flower runs on the supervised SuperLink.

``flwr run APP_DIR coordinator --run-config FILE.toml --format json`` (Flower's own CLI, with
``FLWR_HOME`` under the coordinator's state directory, whose profile trusts the SuperLink's root
certificate) submits a run and ``flwr stop`` ends it. A run's status is read in this process from
the SuperLink's Control API (``ListRuns``, the call ``flwr ls`` makes), over HTTPS verified against
the same root certificate: a ``flwr ls`` process costs about 1.5 CPU seconds of imports per read,
the in-process call a few milliseconds on one kept connection.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import tomllib
from pathlib import Path
from typing import Any

import httpx

from coordinator.superlink_supervisor import CONNECTION_NAME, SuperLinkError, SuperLinkSupervisor, reply_json

__all__ = ["FlowerRuns", "control_client", "run_status"]

_log = logging.getLogger("loyalfed.coordinator.runs")


class FlowerRuns:
    """Flower runs of the packaged loyalfed app on one supervised SuperLink."""

    def __init__(self, superlink: SuperLinkSupervisor, *, app_dir: Path, runs_dir: Path) -> None:
        self._superlink = superlink
        self.app_dir = app_dir
        self.runs_dir = runs_dir
        self._control: Any = None  # Flower's ControlHttpClient, made on the first status read
        self._control_lock = threading.Lock()

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
        with self._control_lock:
            if self._control is None:
                self._control = control_client(self._superlink.address, self._superlink.certificates.ca)
            return run_status(self._control, run_id)

    def stop(self, run_id: str) -> None:
        self._flwr("stop", run_id, CONNECTION_NAME, timeout_s=60.0)


def control_client(address: str, root_certificate: Path) -> Any:
    """Flower's HTTPS client of a SuperLink's Control API, verified against ``root_certificate``."""
    from flwr.supercore.control.control_http_client import ControlHttpClient
    from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor

    return ControlHttpClient.from_server_address(
        server_address=address,
        insecure=False,
        root_certificates=str(root_certificate.resolve()),
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
    )


def run_status(client: Any, run_id: str) -> str | None:
    """The run's status as ``flwr ls`` prints it: the status, ``:sub_status`` once there is one.

    None if the SuperLink lists no such run; ``SuperLinkError`` if it cannot be asked.
    """
    from flwr.proto.control_pb2 import ListRunsRequest

    try:
        reply = client.ListRuns(ListRunsRequest(run_id=int(run_id)))
    except httpx.HTTPStatusError as err:
        if err.response.status_code == httpx.codes.NOT_FOUND:  # Flower's RUN_ID_NOT_FOUND
            return None
        _log.warning("the Control API did not list run %s: %s", run_id, err)
        raise SuperLinkError(f"the SuperLink's Control API did not list run {run_id}") from err
    except (OSError, ValueError, httpx.HTTPError) as err:
        _log.warning("the Control API did not list run %s: %s", run_id, err)
        raise SuperLinkError(f"the SuperLink's Control API did not list run {run_id}") from err
    run = reply.run_dict.get(int(run_id))
    if run is None:
        return None
    return f"{run.status.status}:{run.status.sub_status}" if run.status.sub_status else run.status.status
