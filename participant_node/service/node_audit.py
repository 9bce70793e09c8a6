"""The node's own audit trail: each job step and each refusal appends a lineage event.

Events go to the federation's audit service when one is configured (``AuditClient``), else to the
node's local log in its state folder. Either way one ``TreeHeadMonitor`` keeps the newest signed
tree head the node has seen in ``audit_tree_head.json`` (0600) and demands a consistency proof to
every newer head (RFC 9162 §8.3), so a log that forks, truncates or is rolled back — even while the
node was down — is caught on the next contact. Events never carry member identifiers
(``audit.lineage_event`` refuses them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import AuditClient, AuditError, AuditLog, EventType, LineageEvent, SignedTreeHead
from audit.head_exchange import HeadReport, head_report
from audit.tree_head_monitor import TreeHeadMonitor

__all__ = ["NodeAudit"]

_LOG = logging.getLogger(__name__)
HEAD_FILE = "audit_tree_head.json"


class NodeAudit:
    """Append this node's lineage events and check every signed tree head it sees.

    ``remote`` is an ``AuditClient`` built with ``state_file=state / HEAD_FILE``; without it the
    node writes to ``state/audit.sqlite``.
    """

    def __init__(
        self,
        state: Path,
        partner_id: str,
        *,
        remote: AuditClient | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.partner_id, self._remote, self._now = partner_id, remote, now
        self._lock = threading.Lock()
        self._local: AuditLog | None = None
        if remote is not None:
            self.monitor = remote.monitor
        else:
            self._local = AuditLog.open(state / "audit.sqlite")
            self.monitor = TreeHeadMonitor(self._local.public_key, self._local, state_file=state / HEAD_FILE)

    @property
    def local_public_key(self) -> Ed25519PublicKey | None:
        """The local log's tree-head key (pin it to verify the log); None with an audit service."""
        return self._local.public_key if self._local is not None else None

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        if self._remote is not None:
            self._remote.close()

    def record(self, event_type: EventType, **fields: Any) -> None:
        """Append one event as this node (role ``node``); a log that misbehaves is an error."""
        record = {"event_type": event_type, "partner": self.partner_id, **fields}
        event = LineageEvent.from_record(record, now=self._now(), actor=self.partner_id, role="node")
        with self._lock:
            if self._remote is not None:
                self._remote.append([event])  # the client's monitor checks the service's head
            else:
                assert self._local is not None
                self._local.append(event)
                self.monitor.observe(self._local.tree_head())

    def safe_record(self, event_type: EventType, **fields: Any) -> bool:
        """``record``, logging (not raising) a failure; for replies that must go out regardless."""
        try:
            self.record(event_type, **fields)
        except (AuditError, OSError):
            _LOG.exception("node %s could not append a %s event", self.partner_id, event_type)
            return False
        return True

    def latest_head(self) -> SignedTreeHead | None:
        """The newest signed tree head this node has seen and checked."""
        return self.monitor.latest

    def head_report(self, *, since: int | None) -> HeadReport | None:
        """The newest head seen of this node's log, with a consistency proof from ``since``."""
        with self._lock:
            head = self.monitor.latest
            if head is None:
                return None
            prover = self._local if self._local is not None else self.monitor
            try:
                return head_report(head, self.monitor.public_key, prover, since=since)
            except AuditError:
                # The log cannot prove from that size: show the head alone (the receiver keeps its own).
                _LOG.warning("node %s's audit log gave no proof from size %s", self.partner_id, since)
                return head_report(head, self.monitor.public_key, prover, since=None)
