"""Partner nodes: registration (TLS certificate, SuperNode public key), heartbeats, online status.

Registering a node also registers its SuperNode's public key with the supervised SuperLink
(``flwr supernode register``), so only SuperNodes whose key the coordinator accepted can connect
(Flower's SuperNode authentication). The keys are public; private keys never leave the partner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from coordinator.platform.organisations import get_organisation
from coordinator.platform.principals import Principal
from coordinator.platform.supernode_keys import openssh_public_key
from coordinator.store.tables import NodeRow

__all__ = [
    "ONLINE_WINDOW",
    "NodeStatus",
    "SuperNodeRegistrar",
    "heartbeat",
    "list_nodes",
    "online_partners",
    "register_node",
]

# A node is online when its last heartbeat is this recent.
ONLINE_WINDOW = timedelta(seconds=30)


class SuperNodeRegistrar(Protocol):
    """The supervised SuperLink, as node registration sees it."""

    @property
    def address(self) -> str: ...

    @property
    def root_certificate_pem(self) -> str: ...

    def register_supernode(self, public_key_pem: str) -> None: ...


@dataclass(frozen=True)
class NodeStatus:
    partner_id: str
    version: str
    api_url: str
    online: bool
    last_heartbeat: datetime | None
    registered_at: datetime


def _check_pems(tls_certificate_pem: str, supernode_public_key_pem: str) -> None:
    try:
        x509.load_pem_x509_certificate(tls_certificate_pem.encode())
    except ValueError as err:
        raise InvalidRequestError("tls_certificate_pem is not a PEM X.509 certificate") from err
    openssh_public_key(supernode_public_key_pem)


def register_node(
    session: Session,
    trail: AuditTrail,
    registrar: SuperNodeRegistrar | None,
    *,
    actor: Principal,
    partner_id: str,
    version: str,
    api_url: str,
    tls_certificate_pem: str,
    supernode_public_key_pem: str,
) -> NodeRow:
    """Record (or re-record) ``partner_id``'s node and admit its SuperNode key to the SuperLink."""
    get_organisation(session, partner_id)
    _check_pems(tls_certificate_pem, supernode_public_key_pem)
    if registrar is None:
        raise ConflictError("this coordinator runs no SuperLink, so it cannot admit a node")
    registrar.register_supernode(supernode_public_key_pem)
    row = session.get(NodeRow, partner_id) or NodeRow(partner_id=partner_id)
    row.version, row.api_url = version, api_url
    row.tls_certificate_pem, row.supernode_public_key_pem = tls_certificate_pem, supernode_public_key_pem
    row.registered_at = trail.clock()
    session.add(row)
    trail.commit(session, EventType.NODE_REGISTERED, actor, partner=partner_id)
    return row


def heartbeat(
    session: Session, *, partner_id: str, version: str, audit_tree_head: dict[str, Any] | None, now: datetime
) -> NodeRow:
    """Record a heartbeat (liveness only: not a lineage event, it changes no data or decision)."""
    row = session.get(NodeRow, partner_id)
    if row is None:
        raise NotFoundError(f"node {partner_id} is not registered")
    row.last_heartbeat, row.version = now, version
    if audit_tree_head is not None:
        row.audit_tree_head = audit_tree_head
    session.commit()
    return row


def _status(row: NodeRow, now: datetime) -> NodeStatus:
    online = row.last_heartbeat is not None and now - row.last_heartbeat <= ONLINE_WINDOW
    return NodeStatus(row.partner_id, row.version, row.api_url, online, row.last_heartbeat, row.registered_at)


def list_nodes(session: Session, *, now: datetime) -> list[NodeStatus]:
    return [_status(row, now) for row in session.scalars(select(NodeRow).order_by(NodeRow.partner_id))]


def online_partners(session: Session, *, now: datetime) -> set[str]:
    return {status.partner_id for status in list_nodes(session, now=now) if status.online}
