"""Partner nodes: registration (TLS certificate, SuperNode public key), heartbeats, online status.

Registering a node also registers its SuperNode's public key with the supervised SuperLink
(``flwr supernode register``), so only SuperNodes whose key the coordinator accepted can connect
(Flower's SuperNode authentication); a node that registers a new key retires its old one. The keys
are public; private keys never leave the partner.

A node whose state folder was lost (or restored from a backup) shows a new or shorter audit log,
which the heartbeat's RFC 9162 §8.3 check refuses for good; its data officer can vouch for the loss
(``reset_audit_pin``) and the coordinator starts over from the node's next head, keeping the head it
forgets in its own log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import EventType, HistoryRewrittenError, SignedTreeHead
from audit.head_exchange import HeadReport, check_head_report
from audit.lineage_event import DatasetRef
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from coordinator.platform.organisations import get_organisation
from coordinator.platform.principals import Principal
from coordinator.platform.supernode_keys import openssh_public_key
from coordinator.store.tables import NodeRow

__all__ = [
    "ONLINE_WINDOW",
    "AuditResetReason",
    "HeartbeatAnswer",
    "NodeStatus",
    "SuperNodeRegistrar",
    "heartbeat",
    "list_nodes",
    "online_partners",
    "register_node",
    "reset_audit_pin",
]

# A node is online when its last heartbeat is this recent.
ONLINE_WINDOW = timedelta(seconds=30)
_LOG = logging.getLogger("loyalfed.coordinator.nodes")


class AuditResetReason(StrEnum):
    """Why a data officer vouches for a node's new audit log (an audit token, never free text)."""

    STATE_LOST = "state_lost"  # the node's state folder is gone: a new log under a new key
    RESTORED_FROM_BACKUP = "restored_from_backup"  # an older copy of the log: a shorter head
    KEY_REPLACED = "key_replaced"  # the log's signing key was replaced (e.g. it was exposed)


class SuperNodeRegistrar(Protocol):
    """The supervised SuperLink, as node registration sees it."""

    @property
    def address(self) -> str: ...

    @property
    def root_certificate_pem(self) -> str: ...

    def register_supernode(self, public_key_pem: str) -> None: ...

    def retire_supernode(self, public_key_pem: str) -> int: ...


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
    replaced = _replaced_key(row.supernode_public_key_pem, supernode_public_key_pem)
    if replaced is not None:
        registrar.retire_supernode(replaced)
    row.version, row.api_url = version, api_url
    row.tls_certificate_pem, row.supernode_public_key_pem = tls_certificate_pem, supernode_public_key_pem
    row.registered_at = trail.clock()
    session.add(row)
    details = {"supernode_key": "replaced"} if replaced is not None else {}
    trail.commit(session, EventType.NODE_REGISTERED, actor, partner=partner_id, details=details)
    return row


def _replaced_key(kept_pem: str | None, new_pem: str) -> str | None:
    """The kept SuperNode key if the node now registers another one (None: first or same key)."""
    if not kept_pem:
        return None
    try:
        same = openssh_public_key(kept_pem) == openssh_public_key(new_pem)
    except InvalidRequestError:
        return None  # a kept key that no longer parses was never admitted
    return None if same else kept_pem


def reset_audit_pin(
    session: Session, trail: AuditTrail, *, actor: Principal, partner_id: str, reason: AuditResetReason
) -> SignedTreeHead | None:
    """Forget the key and newest head kept of ``partner_id``'s audit log; returns the head forgotten.

    RFC 9162 §8.3's check must refuse a log that went back or changed key, so after a node lost
    its state folder (a new log, a new key) or was restored from a backup (an older head) every
    heartbeat is refused. Only the partner's data officer may say the loss is genuine; the reset is
    itself an event of the coordinator's log naming the forgotten head's root and log key, so the
    history before it stays provable and the gap is on record. The next heartbeat pins anew.
    """
    row = session.get(NodeRow, partner_id)
    if row is None:
        raise NotFoundError(f"node {partner_id} is not registered")
    kept, _pinned = _kept_head(row)
    row.audit_tree_head = None
    session.add(row)
    forgotten = (
        (
            DatasetRef(partner=partner_id, fingerprint=kept.root_hash, name="audit log root forgotten"),
            DatasetRef(partner=partner_id, fingerprint=kept.log_id, name="audit log key forgotten"),
        )
        if kept is not None
        else ()
    )
    details: dict[str, str | int] = {"reason": reason.value}
    if kept is not None:
        details["forgotten_tree_size"] = kept.tree_size
    trail.commit(
        session, EventType.NODE_AUDIT_RESET, actor, partner=partner_id, inputs=forgotten, details=details
    )
    _LOG.warning("node %s: audit log head forgotten on its officer's word (%s)", partner_id, reason.value)
    return kept


@dataclass(frozen=True)
class HeartbeatAnswer:
    """What a heartbeat returns: the size of the node's log head kept here (prove from it next
    time) and this coordinator's own log head with a proof from the size the node last accepted."""

    audit_tree_size: int | None
    coordinator_head: HeadReport | None


def heartbeat(
    session: Session,
    trail: AuditTrail,
    *,
    partner_id: str,
    version: str,
    audit_head: HeadReport | None,
    coordinator_tree_size: int | None,
    now: datetime,
) -> HeartbeatAnswer:
    """Record a heartbeat (liveness only: not a lineage event) after checking the node's log head.

    RFC 9162 §8.3: the newest head seen of each node's log is kept with the log's key (pinned at
    the first heartbeat); a head that is not consistent with it — rolled back, forked, re-keyed — is
    refused (``ConflictError``) and an ``audit.alarm`` event is appended to this coordinator's log.
    """
    row = session.get(NodeRow, partner_id)
    if row is None:
        raise NotFoundError(f"node {partner_id} is not registered")
    kept, pinned = _kept_head(row)
    if audit_head is not None:
        try:
            newest = check_head_report(audit_head, kept=kept, pinned_key=pinned)
        except HistoryRewrittenError as err:
            session.rollback()
            trail.record(EventType.AUDIT_ALARM, None, partner=partner_id, details={"log": "node"})
            _LOG.error("node %s showed an inconsistent audit log head: %s", partner_id, err)
            raise ConflictError(
                f"node {partner_id}'s audit log is not consistent with the head this coordinator "
                f"saw before: {err}"
            ) from err
        row.audit_tree_head = {"public_key": audit_head.public_key, "head": newest.model_dump(mode="json")}
        kept = newest
    row.last_heartbeat, row.version = now, version
    session.commit()
    return HeartbeatAnswer(
        audit_tree_size=kept.tree_size if kept is not None else None,
        coordinator_head=trail.head_report(since=coordinator_tree_size),
    )


def _kept_head(row: NodeRow) -> tuple[SignedTreeHead | None, str | None]:
    """The newest head of the node's log seen here and its pinned key (none before the first)."""
    stored = row.audit_tree_head
    if not isinstance(stored, dict) or not isinstance(stored.get("public_key"), str):
        return None, None
    return SignedTreeHead.model_validate(stored["head"]), str(stored["public_key"])


def _status(row: NodeRow, now: datetime) -> NodeStatus:
    online = row.last_heartbeat is not None and now - row.last_heartbeat <= ONLINE_WINDOW
    return NodeStatus(row.partner_id, row.version, row.api_url, online, row.last_heartbeat, row.registered_at)


def list_nodes(session: Session, *, now: datetime) -> list[NodeStatus]:
    return [_status(row, now) for row in session.scalars(select(NodeRow).order_by(NodeRow.partner_id))]


def online_partners(session: Session, *, now: datetime) -> set[str]:
    return {status.partner_id for status in list_nodes(session, now=now) if status.online}
