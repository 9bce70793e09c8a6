"""The coordinator service's app factory: FastAPI under ``/api/v1``, the store, the SuperLink, the runner.

Nothing starts at import: ``create_app(settings)`` builds the app, and its lifespan opens the store
(migrating it to head), the audit trail, creates the administrator's token on the first start,
starts the supervised SuperLink and the job runner, and stops both on shutdown.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Protocol

from fastapi import FastAPI

from coordinator.console import mount_console
from coordinator.platform.audit_trail import AuditTrail, Clock, utc_now
from coordinator.platform.principal_cache import PrincipalCache
from coordinator.platform.principals import ensure_admin_token
from coordinator.service.dependencies import ServiceState
from coordinator.service.error_table import install_error_table
from coordinator.service.routes import (
    audit,
    identity,
    jobs,
    node_reports,
    nodes,
    points,
    policies,
    psi_runs,
    registry,
)
from coordinator.service.settings import CoordinatorSettings
from coordinator.store.database import open_store

__all__ = ["API_PREFIX", "Background", "create_app", "prepare_state_dir"]

API_PREFIX = "/api/v1"


class Background(Protocol):
    """A supervised part of the service (the SuperLink, the job runner): started and stopped with it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


# Builds the background parts once the state exists (the SuperLink supervisor, the job runner).
BackgroundFactory = Callable[[ServiceState], list[Background]]


def prepare_state_dir(settings: CoordinatorSettings) -> None:
    """Create DIR with mode 0700 (it holds the store, the admin token and the audit key)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(settings.state_dir, 0o700)


def open_state(settings: CoordinatorSettings, *, clock: Clock = utc_now) -> ServiceState:
    prepare_state_dir(settings)
    engine, sessions = open_store(settings.store_url())
    trail = AuditTrail.open(settings.state_dir / "audit.sqlite", clock=clock)
    token = settings.bootstrap_admin_token.get_secret_value() if settings.bootstrap_admin_token else None
    with sessions() as session:
        ensure_admin_token(session, settings.state_dir, now=clock(), bootstrap_token=token)
    return ServiceState(
        settings=settings, sessions=sessions, trail=trail, engine=engine, principals=PrincipalCache(sessions)
    )


def create_app(
    settings: CoordinatorSettings, *, clock: Clock = utc_now, background: BackgroundFactory | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = open_state(settings, clock=clock)
        app.state.coordinator = state
        parts = background(state) if background else []
        started: list[Background] = []
        try:
            for part in parts:
                part.start()
                started.append(part)
            yield
        finally:
            for part in reversed(started):
                with suppress(Exception):  # shutdown: stop every part even if one fails
                    part.stop()
            state.trail.close()
            state.engine.dispose()

    app = FastAPI(
        title="loyalfed coordinator",
        version="1",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_table(app)
    # FastAPI tries the routers in the order they are included, matching the path against each of
    # their routes: the few identity routes (health) first, then the jobs router (job-status
    # polling, the hottest read). No two routers share a path, so the order changes nothing else.
    for module in (identity, jobs, nodes, policies, registry, audit, points, psi_runs, node_reports):
        app.include_router(module.router, prefix=API_PREFIX)
    mount_console(app)  # last: the API routes keep precedence over the static pages at "/"
    return app
