"""Fixtures for the audit tests: a fixed clock, a fixed key, a small populated log."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from audit.lineage_event import LineageEvent
    from audit.tree_head import TreeHeadSigner

# With `.venv/bin/pytest` the repository root is not on sys.path and pytest's default "prepend"
# import mode puts tests/ there, so tests/audit would shadow the real `audit` package as a namespace
# package. Put the root first (a no-op under `python -m pytest`); the test modules, imported after
# this file, then find the real packages. (This file itself imports `audit` only inside functions.)
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
POLICY = "a1" * 32
SNAPSHOT = "c0" * 32


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture
def signer(signing_key: Ed25519PrivateKey) -> TreeHeadSigner:
    from audit.tree_head import TreeHeadSigner

    return TreeHeadSigner(signing_key, now=lambda: T0)


def flow_events(job: str = "job-1", model: str = "model-1", rounds: int = 3) -> list[LineageEvent]:
    """A realistic federated-training flow: policy, approvals, consent, PSI, job, ε, model."""
    from audit.lineage_event import LineageEvent

    partners = ["freshmart-north", "careplus"]
    t = iter(T0 + timedelta(minutes=i) for i in range(1000))
    common = {"purpose": "analytics.churn_model", "policy_hash": POLICY}
    events = [
        LineageEvent(
            event_type="policy.drafted",
            time=next(t),
            actor="analyst-ana",
            role="analyst",
            partners=partners,
            categories=["transactions", "members"],
            **common,
        ),
    ]
    for partner in partners:
        events.append(
            LineageEvent(
                event_type="policy.approved",
                time=next(t),
                actor=f"dpo-{partner}",
                role="data_officer",
                partner=partner,
                **common,
            )
        )
        events.append(
            LineageEvent(
                event_type="consent.imported",
                time=next(t),
                actor=f"node-{partner}",
                role="node",
                partner=partner,
                consent_snapshot_hash=SNAPSHOT,
                details={"records": 2400, "granted": 2100},
            )
        )
    inputs = [
        {"partner": p, "fingerprint": f"{i + 1:02x}" * 32, "name": "transactions"}
        for i, p in enumerate(partners)
    ]
    run = {"job_id": job, "consent_snapshot_hash": SNAPSHOT, **common}
    events.append(
        LineageEvent(
            event_type="job.started",
            time=next(t),
            actor="coordinator",
            role="coordinator",
            inputs=inputs,
            categories=["transactions"],
            **run,
        )
    )
    for r in range(rounds):
        events.append(
            LineageEvent(
                event_type="job.round",
                time=next(t),
                actor="coordinator",
                role="coordinator",
                details={"round": r + 1, "clients": 2},
                **run,
            )
        )
    for partner in partners:
        events.append(
            LineageEvent(
                event_type="budget.charged",
                time=next(t),
                actor=f"node-{partner}",
                role="node",
                partner=partner,
                epsilon=0.75,
                delta=1e-5,
                **run,
            )
        )
    events.append(
        LineageEvent(event_type="job.finished", time=next(t), actor="coordinator", role="coordinator", **run)
    )
    events.append(
        LineageEvent(
            event_type="model.published",
            time=next(t),
            actor="coordinator",
            role="coordinator",
            model_id=model,
            outputs=[{"name": "weights.pt", "sha256": "ee" * 32}],
            **run,
        )
    )
    return events


@pytest.fixture
def make_log(tmp_path: Path) -> Callable[..., Path]:
    """Build a log of ``batches`` copies of the flow (one batch each) and return its path.

    The key is the default key file next to the log, so verification has an anchor outside the
    database (as in the demo).
    """

    def build(batches: int = 3, name: str = "audit.sqlite") -> Path:
        from audit.audit_log import AuditLog, default_key_path
        from audit.tree_head import TreeHeadSigner, load_or_create_signing_key

        path = tmp_path / name
        signer = TreeHeadSigner(load_or_create_signing_key(default_key_path(path)), now=lambda: T0)
        with AuditLog.open(path, signer=signer) as log:
            for b in range(batches):
                log.append_batch(flow_events(job=f"job-{b}", model=f"model-{b}"))
        return path

    return build


@pytest.fixture
def flow() -> Callable[..., list[LineageEvent]]:
    """:func:`flow_events` as a fixture (tests/audit is not a package, so no relative imports)."""
    return flow_events
