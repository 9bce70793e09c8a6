"""Dependency aliases for thin routes: ``SessionDep``, ``TrailDep``, ``CurrentPrincipal``, ``StateDep``.

The aliases are ``async`` where they do no blocking I/O: FastAPI runs a plain ``def`` dependency
in the thread pool, and a hop there and back per dependency cost more than the request's own work.
Routes stay plain ``def`` (their store calls block), so a request makes one hop, two when its
token is not in the principal cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.principal_cache import PrincipalCache
from coordinator.platform.principals import Principal
from coordinator.service.settings import CoordinatorSettings

__all__ = [
    "CurrentPrincipal",
    "ServiceState",
    "SessionDep",
    "StateDep",
    "SuperLinkHandle",
    "TrailDep",
    "service_state",
]


class SuperLinkHandle(Protocol):
    """The supervised SuperLink as the routes see it (``coordinator.superlink_supervisor``)."""

    @property
    def address(self) -> str: ...

    @property
    def root_certificate_pem(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def register_supernode(self, public_key_pem: str) -> None: ...

    def retire_supernode(self, public_key_pem: str) -> int: ...


@dataclass
class ServiceState:
    """What the routes share: the settings, the store, the audit trail and the SuperLink."""

    settings: CoordinatorSettings
    sessions: sessionmaker[Session]
    trail: AuditTrail
    engine: Engine
    principals: PrincipalCache
    superlink: SuperLinkHandle | None = None


def service_state(request: Request) -> ServiceState:
    """The service's state, for a route that takes the request itself (one dependency fewer)."""
    state: ServiceState = request.app.state.coordinator
    return state


async def _state(request: Request) -> ServiceState:
    return service_state(request)


StateDep = Annotated[ServiceState, Depends(_state)]


async def _session(state: StateDep) -> AsyncIterator[Session]:
    # Making a Session does no I/O (it connects on first use, in the route's thread). Closing one
    # returns its connection: a local library call for SQLite, a round trip for a network database,
    # which is kept off the event loop.
    session = state.sessions()
    try:
        yield session
    finally:
        if state.engine.dialect.name == "sqlite":
            session.close()
        else:
            await run_in_threadpool(session.close)


async def _trail(state: StateDep) -> AuditTrail:
    return state.trail


SessionDep = Annotated[Session, Depends(_session)]
TrailDep = Annotated[AuditTrail, Depends(_trail)]
_bearer = HTTPBearer(auto_error=False, description="a token issued by the federation's administrator")


async def _principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    # The state from the request rather than through StateDep: FastAPI resolves every dependency
    # of every request anew, and this one runs on each of them.
    state = service_state(request)
    token = credentials.credentials if credentials else None
    cached = state.principals.cached(token)
    if cached is not None:
        return cached
    return await run_in_threadpool(state.principals.authenticate, token)


CurrentPrincipal = Annotated[Principal, Depends(_principal)]
