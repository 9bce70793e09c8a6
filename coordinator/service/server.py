"""Run the coordinator service: uvicorn (HTTPS when given a certificate) around ``create_app``,
with the supervised SuperLink and the job runner as the app's background parts."""

from __future__ import annotations

import uvicorn

from coordinator.flower_runs import FlowerRuns
from coordinator.job_runner import JobRunner, RunLauncher
from coordinator.service.app import Background, create_app
from coordinator.service.dependencies import ServiceState
from coordinator.service.settings import CoordinatorSettings
from coordinator.superlink_certificates import ensure_superlink_certificates
from coordinator.superlink_supervisor import SuperLinkSupervisor, free_port

__all__ = ["background_parts", "serve"]


def background_parts(settings: CoordinatorSettings, state: ServiceState, *, port: int) -> list[Background]:
    """The SuperLink supervisor (when enabled) and the job runner, wired to ``state``."""
    parts: list[Background] = []
    launcher: RunLauncher | None = None
    if settings.superlink:
        folder = settings.superlink_certs or settings.state_dir / "superlink-tls"
        certificates = ensure_superlink_certificates(folder, [settings.host, "localhost"])
        supervisor = SuperLinkSupervisor(
            state_dir=settings.state_dir,
            certificates=certificates,
            host=settings.host,
            port=settings.superlink_port,
        )
        state.superlink = supervisor
        parts.append(supervisor)
        if settings.flower_app is not None:
            launcher = FlowerRuns(
                supervisor, app_dir=settings.flower_app, runs_dir=settings.state_dir / "runs"
            )
    parts.append(
        JobRunner(
            state.sessions,
            state.trail,
            launcher,
            coordinator_url=settings.base_url(port),
            coordinator_ca=settings.tls_ca,
            runs_dir=settings.state_dir / "runs" if launcher is not None else None,
        )
    )
    return parts


def serve(settings: CoordinatorSettings) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); the lifespan stops the SuperLink and the runner."""
    port = settings.port or free_port(settings.host)
    app = create_app(settings, background=lambda state: background_parts(settings, state, port=port))
    uvicorn.run(
        app,
        host=settings.host,
        port=port,
        log_level="warning",
        access_log=False,
        # uvloop's event loop and the httptools parser (both declared dependencies) rather than
        # uvicorn's pure-Python fallbacks, named so that a missing one fails at start, not silently.
        loop="uvloop",
        http="httptools",
        # A client holding a keep-alive TLS connection open must not keep the service (and its
        # SuperLink) running after SIGTERM: in-flight requests get this long, then shutdown proceeds.
        timeout_graceful_shutdown=5,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )
