"""The audit service: a small FastAPI app over one :class:`~audit.audit_log.AuditLog`.

Every client (a node, the coordinator, an auditor) holds its own API token; the service stores
only SHA-256 digests of tokens. Appending requires a grant that allows it, and the appended events
must name the client's own actor, so a node cannot write events in the coordinator's name.
Reads are scoped by the grant's role: an auditor reads every event; every client reads the events
it wrote; a partner also reads the events that name it (as the acting partner, an input's owner
or one of the partners involved) and nothing about other partners.

Every response carries the latest signed tree head in ``X-Audit-Tree-Head`` so that a
:class:`~audit.tree_head_monitor.TreeHeadMonitor` can check consistency on every contact.
The service fails closed: a malformed request gets a 4xx that names fields and rules, never the
values it carried (:mod:`audit.request_errors`); ``GET /health`` needs no token. Serve it over
TLS (``loyalfed audit serve --tls-cert … --tls-key …``).
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from audit.audit_log import MAX_TREE_SIZE, AuditLog, LogEntry
from audit.errors import AuditError
from audit.lineage_event import LineageEvent
from audit.lineage_graph import build_lineage_graph
from audit.request_errors import install_validation_handler
from audit.tree_head import TREE_HEAD_HEADER, SignedTreeHead

__all__ = ["TREE_HEAD_HEADER", "ClientGrant", "ClientRole", "ServiceConfig", "create_app", "token_digest"]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ClientRole(StrEnum):
    """Who a client is decides what it may read (DESIGN.md "Who uses it")."""

    PARTNER = "partner"  # a partner's node or data officer: events about that partner
    COORDINATOR = "coordinator"  # the coordinator: the events it wrote
    AUDITOR = "auditor"  # everything


class ClientGrant(BaseModel):
    """One client's credentials and rights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    actor: str = Field(min_length=1, max_length=128)
    role: ClientRole
    partner: str | None = Field(default=None, min_length=1, max_length=128)
    may_append: bool = False

    @model_validator(mode="after")
    def _partner_names_its_partner(self) -> ClientGrant:
        if (self.role == ClientRole.PARTNER) != (self.partner is not None):
            raise ValueError("a partner grant names its partner, and only a partner grant does")
        return self

    def may_read(self, event: LineageEvent) -> bool:
        """An auditor reads all; anyone reads what it wrote; a partner reads events naming it."""
        if self.role == ClientRole.AUDITOR or event.actor == self.actor:
            return True
        return self.role == ClientRole.PARTNER and self.partner in event.partner_names()


class ServiceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clients: tuple[ClientGrant, ...] = Field(min_length=1)
    max_batch: int = Field(default=10_000, ge=1)


class AppendRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    events: list[LineageEvent] = Field(min_length=1)


class AppendResponse(BaseModel):
    seqs: list[int]
    tree_head: SignedTreeHead


class EntryPublic(BaseModel):
    seq: int
    event: LineageEvent


class ProofPublic(BaseModel):
    tree_size: int
    proof: list[str]
    leaf_hash: str | None = None


_bearer = HTTPBearer(auto_error=False)


def _grant(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> ClientGrant:
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    presented = token_digest(credentials.credentials)
    for grant in request.app.state.config.clients:
        if hmac.compare_digest(presented, grant.token_sha256):
            return grant  # type: ignore[no-any-return]
    raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})


def _log(request: Request) -> AuditLog:
    return request.app.state.log  # type: ignore[no-any-return]


Grant = Annotated[ClientGrant, Depends(_grant)]
LogDep = Annotated[AuditLog, Depends(_log)]
# Sizes and positions are SQLite integers: bounded to int64 at the edge, so a huge number is a 422.
Size = Annotated[int, Query(ge=0, le=MAX_TREE_SIZE)]
Id = Annotated[str, Query(min_length=1, max_length=128)]


def create_app(log: AuditLog, config: ServiceConfig) -> FastAPI:
    """The audit API over ``log``; ``app.state.log`` is the log it serves."""
    app = FastAPI(title="loyalfed audit", version="1")
    app.state.log, app.state.config = log, config
    install_validation_handler(app)

    @app.exception_handler(AuditError)
    async def _audit_error(request: Request, err: AuditError) -> JSONResponse:
        # Messages of AuditError are operator-safe by contract (no member data).
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.middleware("http")
    async def _attach_tree_head(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers[TREE_HEAD_HEADER] = request.app.state.log.tree_head().model_dump_json()
        return response

    _write_routes(app)
    _read_routes(app)
    return app


def _write_routes(app: FastAPI) -> None:
    @app.get("/health")
    def health(log: LogDep) -> dict[str, object]:
        return {"status": "ok", "tree_size": log.size}

    @app.post("/v1/events", response_model=AppendResponse)
    def append_events(body: AppendRequest, grant: Grant, log: LogDep) -> AppendResponse:
        if not grant.may_append:
            raise HTTPException(403, f"client {grant.client_id} may not append")
        if len(body.events) > app.state.config.max_batch:
            raise HTTPException(413, f"at most {app.state.config.max_batch} events per request")
        if any(event.actor != grant.actor for event in body.events):
            raise HTTPException(403, f"client {grant.client_id} may only append events by {grant.actor!r}")
        seqs = log.append_batch(body.events)
        return AppendResponse(seqs=seqs, tree_head=log.tree_head())


def _visible(log: AuditLog, grant: ClientGrant) -> list[LogEntry]:
    return [(seq, event) for seq, event in log.iter_events() if grant.may_read(event)]


def _read_routes(app: FastAPI) -> None:
    @app.get("/v1/events", response_model=list[EntryPublic])
    def query_events(
        grant: Grant,
        log: LogDep,
        job_id: Id | None = None,
        model_id: Id | None = None,
        partner: Id | None = None,
        transfer_id: Id | None = None,
        since: Annotated[AwareDatetime | None, Query()] = None,
        until: Annotated[AwareDatetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[EntryPublic]:
        found = log.events(
            job_id=job_id,
            model_id=model_id,
            partner=partner,
            transfer_id=transfer_id,
            since=since,
            until=until,
            limit=limit,
            visible=grant.may_read,
        )
        return [EntryPublic(seq=seq, event=event) for seq, event in found]

    @app.get("/v1/lineage/{model_id}")
    def lineage(
        model_id: Annotated[str, Path(min_length=1, max_length=128)], grant: Grant, log: LogDep
    ) -> dict[str, object]:
        return build_lineage_graph(_visible(log, grant), model_id).as_dict()

    @app.get("/v1/tree-head", response_model=SignedTreeHead)
    def tree_head(grant: Grant, log: LogDep, tree_size: Size | None = None) -> SignedTreeHead:
        return log.tree_head(tree_size)

    @app.get("/v1/public-key")
    def public_key(grant: Grant, log: LogDep) -> dict[str, str]:
        return {"ed25519": log.public_key_hex}

    @app.get("/v1/proofs/inclusion", response_model=ProofPublic)
    def inclusion(seq: Size, grant: Grant, log: LogDep, tree_size: Size | None = None) -> ProofPublic:
        size = log.size if tree_size is None else tree_size
        proof = log.inclusion_proof(seq, size)
        return ProofPublic(tree_size=size, proof=[p.hex() for p in proof], leaf_hash=log.entry(seq)[1].hex())

    @app.get("/v1/proofs/consistency", response_model=ProofPublic)
    def consistency(old_size: Size, grant: Grant, log: LogDep, new_size: Size | None = None) -> ProofPublic:
        size = log.size if new_size is None else new_size
        return ProofPublic(tree_size=size, proof=[p.hex() for p in log.consistency_proof(old_size, size)])
