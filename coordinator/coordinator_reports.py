"""The ServerApp's reports to the coordinator service: progress, refusals, outcome and the model.

A deployment run carries the coordinator's URL, a job-run token minted for this run only, and the
coordinator's CA certificate (``protocol.RunConfigKey``). The ServerApp posts, with that token as
``Authorization: Bearer``:

* ``POST /api/v1/jobs/{id}/progress`` after every round: round, nodes answered, the largest ε a
  node reports spent so far, and the pooled metrics (train loss, validation AUC);
* ``POST /api/v1/jobs/{id}/events``: a node's refusal (partner id and its reason), the ledger
  settlement as a log line, and the outcome (finished, or failed with the reason);
* ``POST /api/v1/models``: the typed model card, the weights (base64) and their SHA-256.

A report that fails is logged and dropped: progress is advisory and must not fail a job that is
training; the outcome and the model are retried a few times.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from coordinator.job_outcome import RoundReport
from protocol import ModelCard, PrivacySpentReply, Refusal

__all__ = ["CoordinatorReporter", "ReportTarget"]

_log = logging.getLogger(__name__)
_API = "/api/v1"
_ATTEMPTS = 3


@dataclass(frozen=True)
class ReportTarget:
    """Where and as whom the ServerApp reports (from the run config)."""

    url: str
    token: str
    ca_certificate: str | None = None  # path of the coordinator's CA certificate (HTTPS)

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError(f"coordinator-url must be https:// (or loopback http), got {self.url!r}")
        if not self.token:
            raise ValueError("job-token is required to report to the coordinator")


class CoordinatorReporter:
    """A ``JobProgress`` sink that reports to the coordinator service over HTTP(S)."""

    def __init__(self, target: ReportTarget, *, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(
            base_url=target.url.rstrip("/") + _API,
            headers={"Authorization": f"Bearer {target.token}"},
            verify=target.ca_certificate or True,
            timeout=30.0,
        )

    def round_finished(self, report: RoundReport) -> None:
        metrics = {"train_loss": report.train_loss, "seconds": report.seconds}
        if report.validation_auc is not None:
            metrics["validation_auc"] = report.validation_auc
        body = {
            "round": report.server_round,
            "nodes_answered": report.nodes_ok,
            "epsilon_spent": report.max_epsilon,
            "metrics": {k: float(v) for k, v in metrics.items() if v == v},  # NaN is not JSON
        }
        self._post(f"/jobs/{report.job_id}/progress", body, attempts=1)

    def node_refused(self, job_id: str, refusal: Refusal) -> None:
        body = {"kind": "refusal", "partner_id": refusal.partner_id, "reason": refusal.reason}
        self._post(f"/jobs/{job_id}/events", body, attempts=_ATTEMPTS)

    def budget_settled(self, job_id: str, spent: dict[str, PrivacySpentReply]) -> None:
        """Each node's accountant figure settles the coordinator's budget table for the job."""
        for partner, reply in sorted(spent.items()):
            body = {"kind": "settlement", "partner_id": partner, "epsilon": reply.epsilon}
            self._post(f"/jobs/{job_id}/events", body, attempts=_ATTEMPTS)
        if not spent:
            self.log(job_id, "no node answered the settlement: the reservations stay charged")

    def stop_requested(self, job_id: str) -> bool:
        return False  # the coordinator stops a run through Flower's Control API

    def log(self, job_id: str, message: str, *, level: str = "info") -> None:
        body = {"kind": "log", "level": level, "message": message[:2000]}
        self._post(f"/jobs/{job_id}/events", body, attempts=1)

    def finished(self, job_id: str) -> None:
        self._post(f"/jobs/{job_id}/events", {"kind": "outcome", "state": "finished"}, attempts=_ATTEMPTS)

    def failed(self, job_id: str, reason: str) -> None:
        body = {"kind": "outcome", "state": "failed", "reason": reason[:1000]}
        self._post(f"/jobs/{job_id}/events", body, attempts=_ATTEMPTS)

    def publish(self, card: ModelCard, weights: bytes) -> None:
        """Send the model to the registry; the card must already name the weights' SHA-256."""
        digest = hashlib.sha256(weights).hexdigest()
        if card.weights_sha256 != digest:
            raise ValueError("the card's weights_sha256 does not match the weights being published")
        body = {
            "job_id": card.job_id,
            "card": card.model_dump(mode="json"),
            "weights_b64": base64.b64encode(weights).decode("ascii"),
            "sha256": digest,
        }
        self._post("/models", body, attempts=_ATTEMPTS)

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, body: dict[str, Any], *, attempts: int) -> None:
        for attempt in range(1, attempts + 1):
            try:
                response = self._client.post(path, json=body)
            except httpx.HTTPError as err:
                _log.warning("report %s failed (attempt %s): %s", path, attempt, type(err).__name__)
            else:
                if response.status_code < 400:
                    return
                # 4xx: the coordinator refused the report; its error body is its own safe message.
                _log.warning("report %s refused: HTTP %s %s", path, response.status_code, response.text[:300])
                if response.status_code < 500:
                    return
            time.sleep(0.5 * attempt)
