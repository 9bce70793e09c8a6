"""The audit record of one PSI run: counts and hashes only, versioned, never identifiers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["RUN_RECORD_VERSION", "MatchingRunRecord", "RunStatus"]


class RunStatus(StrEnum):
    """How a run ended, as recorded for audit."""

    COMPLETED = "completed"  # the protocol finished and its result was computed
    REFUSED = "refused"  # a rule refused the run before any group work (``refusal`` names it)
    ABORTED = "aborted"  # closed before the result existed, or ended by a protocol error
    EXPIRED = "expired"  # no request within the session timeout


# Version 2: refused runs are recorded too (rule, unknown sizes as None), with how the peer was
# authenticated (``participant_node.matching.peer_identity``).
RUN_RECORD_VERSION = 2


@dataclass(frozen=True)
class MatchingRunRecord:
    """What a node logs about a PSI run it took part in, refused or aborted.

    ``peer`` is the authenticated partner id (``"unauthenticated"`` when the peer's certificate
    named none); ``status`` is a :class:`RunStatus`: a refused run has the ``refusal`` rule, and a
    refused or aborted run has None for what was never computed.
    """

    session_id: str
    role: str  # "initiator" or "responder"
    partner: str
    peer: str
    purpose: str
    mode: str
    own_set_size: int | None
    peer_set_size: int | None
    result_cardinality: int | None
    consent_snapshot_hash: str | None
    at: datetime
    status: str = RunStatus.COMPLETED
    refusal: str | None = None
    peer_authentication: str | None = None  # "certificate" or "loopback-declared" (responder side)
    version: int = RUN_RECORD_VERSION

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["at"] = self.at.isoformat()
        return record

    def lineage_fields(self) -> dict[str, Any]:
        """Keyword arguments for a ``psi.run`` lineage event (counts only)."""
        details: dict[str, Any] = {
            "mode": self.mode,
            "psi_role": self.role,
            "peer": self.peer,
            "own_set_size": self.own_set_size,
            "peer_set_size": self.peer_set_size,
            "result_cardinality": self.result_cardinality,
            "status": self.status,
            "refusal": self.refusal,
            "peer_authentication": self.peer_authentication,
        }
        return {
            "actor": self.partner,
            "role": "partner organisation",
            "partner": self.partner,
            "purpose": self.purpose,
            "consent_snapshot_hash": self.consent_snapshot_hash,
            # Audit details hold numbers and tokens only: unknown results are left out, not null.
            "details": {k: v for k, v in details.items() if v is not None},
        }
