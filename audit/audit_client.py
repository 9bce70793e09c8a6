"""A typed HTTP client for the audit service, with the tree-head monitor composed in.

Nodes and the coordinator append through it; every response's signed tree head is checked for
consistency with the latest one this client saw (:class:`~audit.tree_head_monitor.TreeHeadMonitor`),
so using the client *is* monitoring the log.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.audit_log import leaf_input
from audit.errors import AuditError
from audit.lineage_event import LineageEvent
from audit.merkle_tree import leaf_hash, verify_inclusion
from audit.tree_head import SignedTreeHead
from audit.tree_head_monitor import TreeHeadMonitor

__all__ = ["AuditClient"]


class AuditClient:
    """Append and query over HTTP(S); ``public_key`` pins the log's Ed25519 key.

    ``state_file`` keeps the newest tree head across restarts (see :mod:`audit.tree_head_monitor`);
    ``verify`` is httpx's TLS verification (a CA bundle path or an ``ssl.SSLContext``, which may
    also carry this party's client certificate for mTLS).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        public_key: Ed25519PublicKey,
        *,
        state_file: Path | None = None,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.monitor = TreeHeadMonitor.for_service(
            base_url, token, public_key, state_file=state_file, verify=verify, timeout=timeout
        )
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=verify,
            event_hooks={"response": [self.monitor]},
        )

    def close(self) -> None:
        self._http.close()
        self.monitor.close()

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code != 200:
            # The service's messages are operator-safe; never forward arbitrary bodies further.
            raise AuditError(f"audit service {method} {path}: HTTP {response.status_code}")
        return response.json()

    def append(self, events: Sequence[LineageEvent]) -> list[int]:
        """Append events; returns their sequence numbers once the service has made them durable."""
        body = {"events": [event.model_dump(mode="json", exclude_none=True) for event in events]}
        return list(self._json("POST", "/v1/events", json=body)["seqs"])

    def events(self, **filters: str | int | datetime | None) -> list[tuple[int, LineageEvent]]:
        params = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items() if v is not None
        }
        found = self._json("GET", "/v1/events", params=params)
        return [(item["seq"], LineageEvent.model_validate(item["event"])) for item in found]

    def lineage(self, model_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/lineage/{model_id}"))

    def tree_head(self) -> SignedTreeHead:
        return SignedTreeHead.model_validate(self._json("GET", "/v1/tree-head"))

    def prove_included(self, seq: int, event: LineageEvent) -> bool:
        """True when ``event`` is entry ``seq`` of the latest tree head this client has accepted."""
        head = self.tree_head()  # also advances the monitor to the newest consistent head
        proof = self._json("GET", "/v1/proofs/inclusion", params={"seq": seq, "tree_size": head.tree_size})
        leaf = leaf_hash(leaf_input(seq, event.canonical_bytes()))
        path = [bytes.fromhex(p) for p in proof["proof"]]
        return verify_inclusion(leaf, seq, head.tree_size, path, head.root)
