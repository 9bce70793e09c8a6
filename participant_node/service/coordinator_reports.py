"""What the node tells its coordinator beside each heartbeat: counts and dates, never a member.

* its data-subject requests (``protocol.node_reports``): each erasure and access request's random
  id, kind, received time, deadline, status and completion time, read from the consent store;
* its consented-member counts per purpose, rounded down to 10 and withheld below k = 20
  (``coarsen_count``), so the analyst's launch form can refuse a job no member consented to;
* a summary of every PSI run it took part in (``MatchingRunRecord``: counts and status), kept in
  an outbox in the node's state folder until the coordinator has acknowledged it, so a run is
  reported once even across a coordinator outage or a node restart.

Requests and counts are sent when they changed, and again every ``resend_after`` (a coordinator
restored from a backup catches up). A failure to reach the coordinator is the caller's to log; the
next heartbeat tries again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from participant_node.consent.selection import consented_members
from participant_node.consent.store import AccessRequest, ConsentStore, ErasureRequest, store_path
from participant_node.data import PartnerData
from participant_node.matching.run_record import MatchingRunRecord
from participant_node.private_state import private_file
from participant_node.service.coordinator_client import CoordinatorClient
from participant_node.service.errors import CoordinatorUnavailableError
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose
from protocol.node_reports import (
    ConsentCount,
    ConsentCountReport,
    SubjectRequestBatch,
    SubjectRequestKind,
    SubjectRequestReport,
    SubjectRequestStatus,
    coarsen_count,
)

__all__ = [
    "OUTBOX_FILE",
    "REQUESTS_PER_REPORT",
    "CoordinatorReports",
    "consent_count_report",
    "subject_request_batch",
]

OUTBOX_FILE = "psi_run_outbox.sqlite"
REQUESTS_PER_REPORT = 1_000
_LOG = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def _utc(value: datetime) -> datetime:
    # The consent store keeps naive UTC times.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def subject_request_batch(partner_dir: Path) -> SubjectRequestBatch:
    """Every erasure and access request of the partner's consent store (none if it has no store)."""
    if not store_path(partner_dir).exists():  # never create a store just to read it
        return SubjectRequestBatch(requests=[])
    store = ConsentStore.at_partner(partner_dir)
    try:
        dated: list[tuple[SubjectRequestKind, ErasureRequest | AccessRequest]] = [
            (SubjectRequestKind.ERASURE, r) for r in store.erasure_requests()
        ]
        dated += [(SubjectRequestKind.ACCESS, r) for r in store.access_requests()]
    finally:
        store.close()
    reports = []
    for kind, r in dated:
        try:
            reports.append(
                SubjectRequestReport(
                    request_id=r.request_id,
                    kind=kind,
                    received_at=_utc(r.received_at),
                    deadline=_utc(r.deadline),
                    status=SubjectRequestStatus.COMPLETED if r.completed_at else SubjectRequestStatus.OPEN,
                    completed_at=_utc(r.completed_at) if r.completed_at else None,
                )
            )
        except ValidationError:
            # An id made before ids were kept clear of digit runs is not sent (the coordinator
            # would refuse the whole report); the node's own `loyalfed consent erasures` shows it.
            _LOG.warning("%s request not reported: its id looks like an identifier", kind.value)
    return SubjectRequestBatch(requests=reports)


def consent_count_report(
    data: PartnerData, *, at: datetime, jurisdictions: frozenset[Jurisdiction]
) -> ConsentCountReport:
    """Members the node's own consent gate would admit for each purpose at ``at``, coarsened."""
    naive = at.astimezone(UTC).replace(tzinfo=None)
    counts = []
    for purpose in Purpose:
        selection = consented_members(
            data.path, data.members, data.consents, purpose=purpose, at=naive, jurisdictions=jurisdictions
        )
        counts.append(ConsentCount(purpose=purpose.value, members=coarsen_count(len(selection.member_ids))))
    return ConsentCountReport(counted_at=at, counts=counts)


class _Outbox:
    """PSI run records awaiting the coordinator's acknowledgement (SQLite, 0600, in the state folder)."""

    def __init__(self, path: Path) -> None:
        private_file(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (session_id TEXT PRIMARY KEY, body TEXT NOT NULL)"
        )

    def put(self, record: MatchingRunRecord) -> None:
        body = record.as_dict()
        body["at"] = _utc(record.at).isoformat()  # the matching service's clock is naive UTC
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO outbox VALUES (?, ?)", (record.session_id, json.dumps(body))
            )

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT session_id, body FROM outbox ORDER BY rowid").fetchall()
        return [(session_id, json.loads(body)) for session_id, body in rows]

    def done(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE session_id = ?", (session_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CoordinatorReports:
    """The node's reports to its coordinator; ``send`` is called after each heartbeat."""

    def __init__(
        self,
        client: CoordinatorClient,
        *,
        partner_id: str,
        data: Callable[[], PartnerData],
        state: Path,
        jurisdictions: frozenset[Jurisdiction],
        resend_after: timedelta = timedelta(minutes=10),
        now: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._client, self._partner_id, self._data = client, partner_id, data
        self._jurisdictions, self._resend_after, self._now = jurisdictions, resend_after, now
        self._outbox = _Outbox(state / OUTBOX_FILE)
        self._sent: dict[str, tuple[str, datetime]] = {}  # report kind -> (what was sent, when)
        self._counted: tuple[object, datetime, ConsentCountReport] | None = None

    def psi_run(self, record: MatchingRunRecord) -> None:
        """Keep a PSI run's record for the next ``send`` (called by the matching service)."""
        self._outbox.put(record)

    def send(self) -> None:
        """Send what changed; raises ``CoordinatorUnavailableError`` on the first failure."""
        data = self._data()
        requests = subject_request_batch(data.path)
        self._send_if_new("subject-requests", requests.model_dump(mode="json"), self._send_requests)
        body = self._counts(data).model_dump(mode="json")
        # Compared without the count's time: the same counts counted later are no news.
        self._send_if_new(
            "consent-counts", body, self._client.report_consent_counts, key={**body, "counted_at": ""}
        )
        for session_id, record in self._outbox.pending():
            try:
                self._client.report_psi_run(record)
            except CoordinatorUnavailableError as err:
                if err.status is None or err.status >= 500 or err.status in (401, 403, 429):
                    raise  # unreachable, or not (yet) allowed: kept for the next heartbeat
                # Refused as malformed: never accepted however often sent; the node's own audit
                # log keeps the run.
                _LOG.warning("PSI run %s not accepted by the coordinator: %s", session_id, err)
            self._outbox.done(session_id)

    def _send_requests(self, partner_id: str, batch: dict[str, Any]) -> None:
        # In parts the coordinator accepts (a report holds at most 10,000 requests); it keeps
        # every request it was told of, so the parts add up.
        requests = batch["requests"]
        for start in range(0, max(len(requests), 1), REQUESTS_PER_REPORT):
            part = {**batch, "requests": requests[start : start + REQUESTS_PER_REPORT]}
            self._client.report_subject_requests(partner_id, part)

    def _counts(self, data: PartnerData) -> ConsentCountReport:
        """Counted again when the data or the consent store changed, or after ``resend_after``
        (consents expire with time); otherwise the last count."""
        store = store_path(data.path)
        version = (id(data), store.stat().st_mtime_ns if store.exists() else 0)
        now = self._now()
        if (
            self._counted is None
            or self._counted[0] != version
            or now - self._counted[1] >= self._resend_after
        ):
            report = consent_count_report(data, at=now, jurisdictions=self._jurisdictions)
            self._counted = (version, now, report)
        return self._counted[2]

    def _send_if_new(
        self,
        kind: str,
        body: dict[str, Any],
        send: Callable[[str, dict[str, Any]], None],
        *,
        key: dict[str, Any] | None = None,
    ) -> None:
        fingerprint = json.dumps(key if key is not None else body, sort_keys=True)
        last = self._sent.get(kind)
        now = self._now()
        if last is not None and last[0] == fingerprint and now - last[1] < self._resend_after:
            return
        send(self._partner_id, body)
        self._sent[kind] = (fingerprint, now)

    def close(self) -> None:
        self._outbox.close()
