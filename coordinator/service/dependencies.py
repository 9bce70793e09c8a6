"""Dependency aliases for thin routes: ``SessionDep``, ``TrailDep``, ``CurrentPrincipal``, ``StateDep``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.principals import Principal, authenticate
from coordinator.service.settings import CoordinatorSettings

__all__ = [
    "CurrentPrincipal",
    "ServiceState",
    "SessionDep",
    "StateDep",
    "SuperLinkHandle",
    "TrailDep",
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


@dataclass
class ServiceState:
    """What the routes share: the settings, the store, the audit trail and the SuperLink."""

    settings: CoordinatorSettings
    sessions: sessionmaker[Session]
    trail: AuditTrail
    engine: Engine
    superlink: SuperLinkHandle | None = None


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.coordinator
    return state


StateDep = Annotated[ServiceState, Depends(_state)]


def _session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


def _trail(state: StateDep) -> AuditTrail:
    return state.trail


SessionDep = Annotated[Session, Depends(_session)]
TrailDep = Annotated[AuditTrail, Depends(_trail)]
_bearer = HTTPBearer(auto_error=False, description="a token issued by the federation's administrator")


def _principal(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    return authenticate(session, credentials.credentials if credentials else None)


CurrentPrincipal = Annotated[Principal, Depends(_principal)]
