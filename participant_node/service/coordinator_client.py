"""The node's client of the coordinator API (``/api/v1``): register, heartbeat, datasets, policies.

Every call carries the node's own bearer token. A failure becomes ``CoordinatorUnavailableError``
with the endpoint and status (never the response body, which the node does not control).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from participant_node.service.errors import CoordinatorUnavailableError
from policies.errors import PolicyError
from policies.policy import DataUsePolicy, parse_policy

__all__ = ["CoordinatorClient", "Registration"]

API = "/api/v1"


@dataclass(frozen=True)
class Registration:
    """The coordinator's answer to a registration: where the SuperLink is and its TLS root."""

    superlink_address: str
    superlink_root_certificate_pem: str


class CoordinatorClient:
    """Typed calls the node makes to its coordinator."""

    def __init__(
        self, base_url: str, *, token: str | None, ca_file: Path | None = None, timeout: float = 30.0
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: str | bool = str(ca_file) if ca_file is not None else True
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + API, headers=headers, verify=verify, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise CoordinatorUnavailableError(
                f"coordinator unreachable at {self._http.base_url}{path}: {type(err).__name__}"
            ) from err
        if response.status_code >= 400:
            message = _error_message(response)
            raise CoordinatorUnavailableError(
                f"coordinator {method} {path}: HTTP {response.status_code} {message}",
                status=response.status_code,
            )
        return response.json() if response.content else None

    def report_settlement(self, totals: dict[str, Any]) -> None:
        """Send the totals of a reconciled settlement statement (never transfers or tokens)."""
        self._call("POST", "/points/settlements", json=totals)

    def report_subject_requests(self, partner_id: str, batch: dict[str, Any]) -> None:
        """Send the node's data-subject requests (ids, dates, status; never a member)."""
        self._call("POST", f"/nodes/{partner_id}/subject-requests", json=batch)

    def report_consent_counts(self, partner_id: str, report: dict[str, Any]) -> None:
        """Send the node's coarsened consented-member counts per purpose."""
        self._call("PUT", f"/nodes/{partner_id}/consent-counts", json=report)

    def report_psi_run(self, record: dict[str, Any]) -> None:
        """Send a PSI run's record (counts and status; idempotent by session id)."""
        self._call("POST", "/psi/runs", json=record)

    def register(
        self,
        *,
        partner_id: str,
        version: str,
        api_url: str,
        tls_certificate_pem: str,
        supernode_public_key_pem: str,
    ) -> Registration:
        body = {
            "partner_id": partner_id,
            "version": version,
            "api_url": api_url,
            "tls_certificate_pem": tls_certificate_pem,
            "supernode_public_key_pem": supernode_public_key_pem,
        }
        # Registration admits the SuperNode key to the SuperLink (a Flower CLI call): allow it time.
        answer = self._call("POST", "/nodes/register", json=body, timeout=120.0)
        if not isinstance(answer, dict) or not all(
            isinstance(answer.get(k), str) for k in ("superlink_address", "superlink_root_certificate_pem")
        ):
            raise CoordinatorUnavailableError("coordinator registration answer lacks the SuperLink address")
        return Registration(answer["superlink_address"], answer["superlink_root_certificate_pem"])

    def heartbeat(
        self,
        partner_id: str,
        *,
        version: str,
        audit_head: dict[str, Any] | None,
        coordinator_tree_size: int | None,
        privacy_spent: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Report liveness, this node's audit head and its accountant's figures for ended jobs the
        coordinator asked about; the answer carries the coordinator's head and the jobs it asks about."""
        body: dict[str, Any] = {"version": version}
        if audit_head is not None:
            body["audit_head"] = audit_head
        if coordinator_tree_size is not None:
            body["coordinator_tree_size"] = coordinator_tree_size
        if privacy_spent:
            body["privacy_spent"] = privacy_spent
        answer = self._call("POST", f"/nodes/{partner_id}/heartbeat", json=body)
        return answer if isinstance(answer, dict) else {}

    def register_dataset(self, partner_id: str, name: str, tables: dict[str, dict[str, Any]]) -> None:
        self._call("POST", "/datasets", json={"partner_id": partner_id, "name": name, "tables": tables})

    def policy_version(self, policy_id: str, version: int) -> DataUsePolicy:
        """A policy document; the caller checks its hash against what the officer signed."""
        answer = self._call("GET", f"/policies/{policy_id}/versions/{version}")
        document = answer.get("document") if isinstance(answer, dict) else None
        if not isinstance(document, dict):
            raise CoordinatorUnavailableError(
                f"coordinator sent no document for policy {policy_id} v{version}"
            )
        try:
            return parse_policy(document, source=f"policy {policy_id} v{version}")
        except PolicyError as err:
            raise CoordinatorUnavailableError(
                f"policy {policy_id} v{version} from the coordinator is invalid"
            ) from err


def _error_message(response: httpx.Response) -> str:
    # The coordinator's errors are {"error": {"code", "message"}}; anything else is not quoted.
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        return ""
    return f"({str(message)[:200]})" if isinstance(message, str) else ""
