"""A node-side monitor: remember the latest signed tree head, demand consistency on every contact.

RFC 9162 §8.3 (monitors and auditors): a client that keeps the last tree head it saw and checks a
consistency proof to each newer head detects a log that forks, truncates or rewrites its history —
without trusting the server. The monitor is an httpx response hook, so any client talking to the
audit service gets the check by composition: ``httpx.Client(event_hooks={"response": [monitor]})``.
"""

from __future__ import annotations

import threading

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.errors import AuditError, HistoryRewrittenError
from audit.merkle_tree import verify_consistency
from audit.tree_head import TREE_HEAD_HEADER, SignedTreeHead, verify_tree_head

__all__ = ["HistoryRewrittenError", "TreeHeadMonitor"]


class TreeHeadMonitor:
    """Checks every tree head the service shows against the latest one seen before.

    ``proofs`` is an httpx client for the same service (without this hook) used to fetch
    consistency proofs; ``public_key`` is the log's pinned Ed25519 key.
    """

    def __init__(self, public_key: Ed25519PublicKey, proofs: httpx.Client) -> None:
        self._key = public_key
        self._proofs = proofs
        self._lock = threading.Lock()
        self.latest: SignedTreeHead | None = None
        self.checks = 0

    def __call__(self, response: httpx.Response) -> None:
        header = response.headers.get(TREE_HEAD_HEADER)
        if header is None:
            raise AuditError(f"{response.request.url.path}: response carries no signed tree head")
        self.observe(SignedTreeHead.model_validate_json(header))

    def observe(self, head: SignedTreeHead) -> None:
        """Accept ``head`` only if it is signed and consistent with the latest head seen."""
        if not verify_tree_head(head, self._key):
            raise HistoryRewrittenError("the audit log presented a tree head with an invalid signature")
        with self._lock:
            previous = self.latest
            if previous is not None:
                self._check_extends(previous, head)
            if previous is None or head.tree_size >= previous.tree_size:
                self.latest = head
            self.checks += 1

    def _check_extends(self, old: SignedTreeHead, new: SignedTreeHead) -> None:
        if new.tree_size < old.tree_size:
            # A smaller head is fine only if it is a prefix of what we saw (e.g. a cached reply).
            old, new = new, old
        if old.tree_size == new.tree_size:
            if old.root_hash != new.root_hash:
                raise HistoryRewrittenError(f"two different roots for tree size {old.tree_size}")
            return
        response = self._proofs.get(
            "/v1/proofs/consistency", params={"old_size": old.tree_size, "new_size": new.tree_size}
        )
        if response.status_code != 200:
            raise HistoryRewrittenError(
                f"the audit log cannot prove size {old.tree_size} -> {new.tree_size}"
                f" (HTTP {response.status_code})"
            )
        proof = [bytes.fromhex(p) for p in response.json()["proof"]]
        if not verify_consistency(old.tree_size, new.tree_size, proof, old.root, new.root):
            raise HistoryRewrittenError(
                f"tree head at size {new.tree_size} is not consistent with the head at size {old.tree_size}"
            )
