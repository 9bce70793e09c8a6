"""Heartbeats that carry audit log heads both ways, each checked for consistency (RFC 9162 §8.3).

On every contact the node shows the coordinator its own log's newest head, with a consistency
proof from the size the coordinator answered last, and checks the coordinator's log head in the
answer against the newest one it has seen of that log (kept, with the log's key pinned at the
first contact, in ``coordinator_tree_head.json``, 0600). A coordinator whose log was rolled back,
forked or re-keyed is not trusted: the alarm goes to the node's own audit log and the heartbeat
raises ``CoordinatorDistrustedError``, which stops the node (fail closed: it takes no further job).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from audit import EventType, HistoryRewrittenError, SignedTreeHead
from audit.head_exchange import HeadReport, check_head_report
from participant_node.service.coordinator_client import CoordinatorClient
from participant_node.service.errors import CoordinatorDistrustedError
from participant_node.service.node_audit import NodeAudit

__all__ = ["AuditHeartbeat"]

_LOG = logging.getLogger(__name__)
COORDINATOR_HEAD_FILE = "coordinator_tree_head.json"
# (job id, purpose) -> the node accountant's figure for the job: {job_id, epsilon, delta, steps}.
SpentReport = Callable[[str, str], dict[str, Any]]


def _is_ask(ask: object) -> bool:
    return (
        isinstance(ask, dict) and isinstance(ask.get("job_id"), str) and isinstance(ask.get("purpose"), str)
    )


class AuditHeartbeat:
    """One node's heartbeats to its coordinator, with the audit heads exchanged and checked."""

    def __init__(
        self,
        client: CoordinatorClient,
        audit: NodeAudit,
        *,
        state: Path,
        partner_id: str,
        version: str,
        spent: SpentReport | None = None,
    ) -> None:
        self._client, self._audit = client, audit
        self._path = state / COORDINATOR_HEAD_FILE
        self._partner_id, self._version = partner_id, version
        self._spent = spent
        # The size of this node's head the coordinator keeps (unknown until its first answer).
        self._acknowledged: int | None = None

    def beat(self) -> None:
        """Send one heartbeat; raises ``CoordinatorUnavailableError`` or ``CoordinatorDistrustedError``.

        When the answer names ended jobs whose reservation on this partner is held
        (``settle_jobs``), a second heartbeat at once carries this node's accountant's figure for
        each: the coordinator's ledger settles from the node's own accountant, never from a guess.
        """
        answer = self._beat([])
        asked = answer.get("settle_jobs")
        if self._spent is not None and isinstance(asked, list) and asked:
            reports = [self._spent(str(a["job_id"]), str(a["purpose"])) for a in asked if _is_ask(a)]
            if reports:
                self._beat(reports)

    def _beat(self, reports: list[dict[str, Any]]) -> dict[str, Any]:
        kept, pinned = self._kept()
        own = self._audit.head_report(since=self._acknowledged)
        answer = self._client.heartbeat(
            self._partner_id,
            version=self._version,
            audit_head=own.model_dump(mode="json") if own is not None else None,
            coordinator_tree_size=kept.tree_size if kept is not None else None,
            privacy_spent=reports,
        )
        size = answer.get("audit_tree_size")
        self._acknowledged = size if isinstance(size, int) else None
        if answer.get("coordinator_head") is not None:
            self._check(answer["coordinator_head"], kept, pinned)
        return answer

    def _check(self, shown: object, kept: SignedTreeHead | None, pinned: str | None) -> None:
        try:
            report = HeadReport.model_validate(shown)
            newest = check_head_report(report, kept=kept, pinned_key=pinned)
        except (ValidationError, HistoryRewrittenError) as err:
            reason = str(err) if isinstance(err, HistoryRewrittenError) else "a malformed tree head"
            self._audit.safe_record(EventType.AUDIT_ALARM, details={"log": "coordinator"})
            _LOG.error("the coordinator's audit log is not consistent: %s", reason)
            raise CoordinatorDistrustedError(
                f"the coordinator's audit log is not consistent with the head this node saw before: {reason}"
            ) from err
        self._save(newest, report.public_key)

    def _kept(self) -> tuple[SignedTreeHead | None, str | None]:
        if not self._path.exists():
            return None, None
        try:
            stored = json.loads(self._path.read_text(encoding="utf-8"))
            return SignedTreeHead.model_validate(stored["head"]), str(stored["public_key"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CoordinatorDistrustedError(
                f"{self._path}: not a saved coordinator head; not trusting the coordinator without it"
            ) from err

    def _save(self, head: SignedTreeHead, public_key: str) -> None:
        """Atomic replace, created 0600 (node state files are private)."""
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"public_key": public_key, "head": head.model_dump(mode="json")}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
