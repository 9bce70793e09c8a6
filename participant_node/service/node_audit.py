"""The node's own audit trail: each job step and each refusal appends a lineage event.

Events go to the federation's audit service when one is configured (``AuditClient``, whose
``TreeHeadMonitor`` checks every signed tree head it sees for consistency with the newest one seen
before, RFC 9162 §8.3), else to the node's local log in its state folder. The newest head is kept in
``audit_tree_head.json`` and restored at start, so a log that forks or is rolled back between two
runs of the node is still detected on the next contact. Events never carry member identifiers
(``audit.lineage_event`` refuses them).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit import AuditClient, AuditError, AuditLog, EventType, LineageEvent, SignedTreeHead

__all__ = ["NodeAudit"]

_LOG = logging.getLogger(__name__)


class NodeAudit:
    """Append this node's lineage events and remember the newest signed tree head."""

    def __init__(
        self,
        state: Path,
        partner_id: str,
        *,
        remote: AuditClient | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.partner_id, self._remote, self._now = partner_id, remote, now
        self._head_path = state / "audit_tree_head.json"
        self._lock = threading.Lock()
        self._local = AuditLog.open(state / "audit.sqlite") if remote is None else None
        if remote is not None and self._head_path.exists():
            remote.monitor.observe(SignedTreeHead.model_validate_json(self._head_path.read_text("utf-8")))

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
                self._remote.append([event])
            else:
                assert self._local is not None
                self._local.append(event)
            self._save_head()

    def latest_head(self) -> SignedTreeHead | None:
        """The newest signed tree head this node has seen (and checked)."""
        if self._remote is not None:
            return self._remote.monitor.latest
        assert self._local is not None
        return self._local.tree_head() if self._local.size else None

    def latest_head_json(self) -> dict[str, Any] | None:
        head = self.latest_head()
        return head.model_dump(mode="json") if head is not None else None

    def _save_head(self) -> None:
        head = self.latest_head()
        if head is None:
            return
        tmp = self._head_path.with_suffix(".tmp")
        tmp.write_text(head.model_dump_json(), encoding="utf-8")
        tmp.replace(self._head_path)

    def safe_record(self, event_type: EventType, **fields: Any) -> bool:
        """``record``, logging (not raising) an audit failure; for paths that must still reply."""
        try:
            self.record(event_type, **fields)
        except (AuditError, OSError, json.JSONDecodeError):
            _LOG.exception("node %s could not append a %s event", self.partner_id, event_type)
            return False
        return True
