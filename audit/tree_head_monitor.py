"""Keep the newest signed tree head seen, and demand consistency with it on every contact.

RFC 9162 §8.3 (monitors and auditors): a client that keeps the last tree head it saw and checks a
consistency proof to each newer head detects a log that forks, truncates, rolls back or rewrites its
history — without trusting the server. This module is the one piece the node and the coordinator
call for that.

Usage
-----
Talking to the audit service (the usual case): build an :class:`~audit.audit_client.AuditClient`
with a ``state_file``; every response's ``X-Audit-Tree-Head`` is checked before the call returns::

    client = AuditClient(url, token, pinned_key, state_file=state_dir / "audit_tree_head.json",
                         verify=ca_bundle)
    client.append(events)          # raises HistoryRewrittenError if the log is not consistent

Any other httpx client gets the same check by composition::

    monitor = TreeHeadMonitor.for_service(url, token, pinned_key, state_file=..., verify=ca_bundle)
    httpx.Client(base_url=url, event_hooks={"response": [monitor]})

A local log (no service) proves consistency itself::

    monitor = TreeHeadMonitor(pinned_key, log, state_file=...)   # AuditLog is a ConsistencyProver
    monitor.observe(log.tree_head())

Guarantees
----------
- ``observe(head)`` accepts a head only if it is signed by the pinned key and is consistent with the
  newest head seen before (same size: same root; larger: a valid RFC 9162 §2.1.4 consistency proof;
  smaller: a proof that it is a prefix of the newest one, e.g. a cached reply). Otherwise it raises
  :class:`~audit.errors.HistoryRewrittenError` and keeps the newest head it had.
- With ``state_file``, the newest head survives restarts (written atomically, mode 0600): a log
  restored from an older backup while the node was down is caught on the first contact after it.
- Thread-safe; ``latest`` is the newest accepted head, ``checks`` counts accepted observations.
"""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path
from typing import Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from audit.errors import AuditError, HistoryRewrittenError
from audit.merkle_tree import verify_consistency
from audit.tree_head import TREE_HEAD_HEADER, SignedTreeHead, verify_tree_head

__all__ = ["ConsistencyProver", "HistoryRewrittenError", "ServiceProofs", "TreeHeadMonitor"]


class ConsistencyProver(Protocol):
    """Anything that can produce an RFC 9162 consistency proof: an ``AuditLog``, the audit service."""

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...


class ServiceProofs:
    """Consistency proofs fetched from the audit service (``GET /v1/proofs/consistency``)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        params = {"old_size": old_size, "new_size": new_size}
        try:
            response = self._client.get("/v1/proofs/consistency", params=params)
            proof = (
                [bytes.fromhex(p) for p in response.json()["proof"]] if response.status_code == 200 else None
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
            raise HistoryRewrittenError(
                f"the audit log gave no consistency proof {old_size} -> {new_size}"
            ) from err
        if proof is None:
            raise HistoryRewrittenError(
                f"the audit log cannot prove size {old_size} -> {new_size} (HTTP {response.status_code})"
            )
        return proof

    def close(self) -> None:
        self._client.close()


class TreeHeadMonitor:
    """Checks every tree head shown against the newest one seen before (see the module docstring)."""

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        prover: ConsistencyProver | httpx.Client,
        *,
        state_file: Path | None = None,
    ) -> None:
        self._key = public_key
        self._prover: ConsistencyProver = (
            ServiceProofs(prover) if isinstance(prover, httpx.Client) else prover
        )
        self._state_file = state_file
        self._lock = threading.Lock()
        self.latest: SignedTreeHead | None = _load_state(state_file) if state_file is not None else None
        self.checks = 0

    @classmethod
    def for_service(
        cls,
        base_url: str,
        token: str,
        public_key: Ed25519PublicKey,
        *,
        state_file: Path | None = None,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 10.0,
    ) -> TreeHeadMonitor:
        """A monitor that fetches its proofs from the audit service at ``base_url`` (its own client)."""
        headers = {"Authorization": f"Bearer {token}"}
        client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, verify=verify)
        return cls(public_key, ServiceProofs(client), state_file=state_file)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The pinned key of the log this monitor watches."""
        return self._key

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """A proof from the log this monitor watches (so the monitor can show its head to others)."""
        return self._prover.consistency_proof(old_size, new_size)

    def close(self) -> None:
        """Close the proof client if this monitor owns one."""
        close = getattr(self._prover, "close", None)
        if callable(close):
            close()

    def __call__(self, response: httpx.Response) -> None:
        """httpx response hook: every response must carry a signed head consistent with the newest."""
        header = response.headers.get(TREE_HEAD_HEADER)
        if header is None:
            raise HistoryRewrittenError(f"{response.request.url.path}: response carries no signed tree head")
        try:
            head = SignedTreeHead.model_validate_json(header)
        except ValidationError as err:
            raise HistoryRewrittenError("the audit log sent a malformed tree head") from err
        self.observe(head)

    def observe(self, head: SignedTreeHead) -> None:
        """Accept ``head`` only if it is signed and consistent with the newest head seen."""
        if not verify_tree_head(head, self._key):
            raise HistoryRewrittenError("the audit log presented a tree head with an invalid signature")
        with self._lock:
            previous = self.latest
            if previous is not None:
                self._check_extends(previous, head)
            if previous is None or head.tree_size > previous.tree_size:
                self.latest = head
                if self._state_file is not None:
                    _save_state(self._state_file, head)
            self.checks += 1

    def _check_extends(self, old: SignedTreeHead, new: SignedTreeHead) -> None:
        if new.tree_size < old.tree_size:
            # A smaller head is fine only if it is a prefix of what we saw (e.g. a cached reply).
            old, new = new, old
        if old.tree_size == new.tree_size:
            if old.root_hash != new.root_hash:
                raise HistoryRewrittenError(f"two different roots for tree size {old.tree_size}")
            return
        try:
            proof = self._prover.consistency_proof(old.tree_size, new.tree_size)
        except HistoryRewrittenError:
            raise
        except AuditError as err:  # e.g. a local log shorter than a head it showed before
            raise HistoryRewrittenError(
                f"no consistency proof {old.tree_size} -> {new.tree_size}: {err}"
            ) from err
        if not verify_consistency(old.tree_size, new.tree_size, proof, old.root, new.root):
            raise HistoryRewrittenError(
                f"tree head at size {new.tree_size} is not consistent with the head at size {old.tree_size}"
            )


def _load_state(path: Path) -> SignedTreeHead | None:
    if not path.exists():
        return None
    try:
        return SignedTreeHead.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as err:
        raise AuditError(f"{path}: not a saved signed tree head; refusing to start without it") from err


def _save_state(path: Path, head: SignedTreeHead) -> None:
    """Atomic replace of the newest head: a private temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(head.model_dump_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
