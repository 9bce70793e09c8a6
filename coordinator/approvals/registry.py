"""The coordinator's policy registry: versioned, content-hashed policies and the decisions on them.

SQLAlchemy over any URL; SQLite at ``./.loyalfed/registry.sqlite`` by default (DESIGN.md: embedded
by default, PostgreSQL in production). Append-only: a changed policy is a new version with a new
hash, decisions are new rows, nothing is updated in place. Whether a job may start is decided by
the pure rules of ``policies.approval``; this module only stores and retrieves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from coordinator.approvals.errors import PolicyNotFoundError, RegistryError
from policies.approval import Approval, ApprovalDecision, ApprovalStatus, approval_status, check_decision
from policies.policy import DataUsePolicy, parse_policy
from policies.roles import Action, Actor, authorize

__all__ = ["DEFAULT_REGISTRY_PATH", "PolicyRegistry", "RegisteredPolicy"]

DEFAULT_REGISTRY_PATH = Path(".loyalfed") / "registry.sqlite"

_metadata = sa.MetaData()
_policies = sa.Table(
    "policies",
    _metadata,
    sa.Column("content_hash", sa.String(64), primary_key=True),
    sa.Column("policy_id", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("drafted_by", sa.String, nullable=False),
    sa.Column("drafted_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("policy_id", "version"),
)
_decisions = sa.Table(
    "decisions",
    _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("policy_id", sa.String(64), nullable=False),
    sa.Column(
        "policy_hash", sa.String(64), sa.ForeignKey("policies.content_hash"), nullable=False, index=True
    ),
    sa.Column("partner", sa.String(64), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("decided_at", sa.DateTime, nullable=False),
)


@dataclass(frozen=True)
class RegisteredPolicy:
    """A policy as registered: its version number and content hash."""

    policy: DataUsePolicy
    version: int
    content_hash: str
    drafted_by: str
    drafted_at: datetime

    @property
    def policy_id(self) -> str:
        return self.policy.policy_id

    @property
    def ref(self) -> str:
        return f"{self.policy_id}@{self.version}"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class PolicyRegistry:
    """Registered policies and the data officers' decisions on them.

    Parameters
    ----------
    url
        SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://…``).
    now
        Clock for the draft and decision stamps (injectable for tests).
    """

    def __init__(self, url: str, *, now: Callable[[], datetime] = _utcnow) -> None:
        self._engine = sa.create_engine(url)
        self._now = now
        try:
            _metadata.create_all(self._engine)
        except sa.exc.SQLAlchemyError as err:
            raise RegistryError(f"cannot open the policy registry at {url} ({type(err).__name__})") from err

    @classmethod
    def at_path(cls, path: Path, **kwargs: Callable[[], datetime]) -> PolicyRegistry:
        """Open (or create) a SQLite registry file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}", **kwargs)

    def close(self) -> None:
        self._engine.dispose()

    def draft(self, policy: DataUsePolicy, *, actor: Actor) -> RegisteredPolicy:
        """Register ``policy``; a changed policy becomes the next version, an unchanged one is a no-op."""
        authorize(actor, Action.POLICY_DRAFT)
        digest = policy.content_hash()
        with self._engine.begin() as conn:
            existing = conn.execute(sa.select(_policies).where(_policies.c.content_hash == digest)).first()
            if existing is not None:
                return _registered(existing)
            latest = conn.execute(
                sa.select(sa.func.max(_policies.c.version)).where(_policies.c.policy_id == policy.policy_id)
            ).scalar()
            row = {
                "content_hash": digest,
                "policy_id": policy.policy_id,
                "version": (latest or 0) + 1,
                "body": policy.canonical_json(),
                "drafted_by": str(actor),
                "drafted_at": self._now(),
            }
            conn.execute(_policies.insert().values(**row))
        return _registered(_Row(row))

    def get(self, ref: str) -> RegisteredPolicy:
        """Resolve ``id`` (latest version), ``id@version`` or a hash prefix (≥ 8 hex digits)."""
        policy_id, _, version = ref.partition("@")
        query = sa.select(_policies)
        if version:
            if not version.isdigit():
                raise PolicyNotFoundError(f"policy reference {ref!r}: version must be a number")
            query = query.where(_policies.c.policy_id == policy_id, _policies.c.version == int(version))
        elif _looks_like_hash(ref):
            query = query.where(
                sa.or_(_policies.c.content_hash.startswith(ref.lower()), _policies.c.policy_id == ref)
            )
        else:
            query = query.where(_policies.c.policy_id == ref)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(_policies.c.version.desc())).all()
        if not rows:
            raise PolicyNotFoundError(f"no registered policy matches {ref!r}")
        if len({r.policy_id for r in rows}) > 1:
            raise PolicyNotFoundError(f"policy reference {ref!r} is ambiguous; give more of the hash")
        return _registered(rows[0])

    def by_hash(self, content_hash: str) -> RegisteredPolicy | None:
        """The registered policy with exactly this content hash, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_policies).where(_policies.c.content_hash == content_hash)).first()
        return None if row is None else _registered(row)

    def latest(self, policy_id: str) -> RegisteredPolicy:
        return self.get(policy_id)

    def list_policies(self) -> list[RegisteredPolicy]:
        """Every registered version, by policy id then version."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(_policies).order_by(_policies.c.policy_id, _policies.c.version)
            ).all()
        return [_registered(r) for r in rows]

    def decide(
        self, ref: str, *, actor: Actor, partner: str, decision: ApprovalDecision, reason: str = ""
    ) -> Approval:
        """Record ``actor``'s decision for ``partner`` on the *current* version of the policy ``ref``."""
        registered = self.get(ref)
        current = self.latest(registered.policy_id)
        if current.content_hash != registered.content_hash:
            raise RegistryError(
                f"{registered.ref} was superseded by {current.ref}; decide on the current version"
            )
        check_decision(actor, registered.policy, partner, decision, reason)
        approval = Approval(
            registered.policy_id,
            registered.content_hash,
            partner,
            decision,
            str(actor),
            self._now(),
            reason.strip(),
        )
        with self._engine.begin() as conn:
            conn.execute(
                _decisions.insert().values(
                    policy_id=approval.policy_id,
                    policy_hash=approval.policy_hash,
                    partner=partner,
                    decision=decision.value,
                    actor=approval.actor,
                    reason=approval.reason,
                    decided_at=approval.decided_at,
                )
            )
        return approval

    def approve(self, ref: str, *, actor: Actor, partner: str | None = None, reason: str = "") -> Approval:
        """Approve for ``partner`` (default: the data officer's own partner)."""
        return self.decide(
            ref,
            actor=actor,
            partner=partner or actor.partner or "",
            decision=ApprovalDecision.APPROVED,
            reason=reason,
        )

    def reject(self, ref: str, *, actor: Actor, reason: str, partner: str | None = None) -> Approval:
        """Reject for ``partner`` (default: the data officer's own partner); a reason is required."""
        return self.decide(
            ref,
            actor=actor,
            partner=partner or actor.partner or "",
            decision=ApprovalDecision.REJECTED,
            reason=reason,
        )

    def decisions(self, policy_id: str) -> list[Approval]:
        """Every decision on every version of ``policy_id``, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(_decisions).where(_decisions.c.policy_id == policy_id).order_by(_decisions.c.seq)
            ).all()
        return [
            Approval(
                r.policy_id,
                r.policy_hash,
                r.partner,
                ApprovalDecision(r.decision),
                r.actor,
                r.decided_at,
                r.reason,
            )
            for r in rows
        ]

    def status(self, ref: str) -> ApprovalStatus:
        """Each partner's state on the hash ``ref`` resolves to (decisions on other hashes are void)."""
        registered = self.get(ref)
        return approval_status(
            registered.policy_id,
            registered.content_hash,
            registered.policy.partners,
            self.decisions(registered.policy_id),
        )


class _Row:
    """A freshly inserted row, readable like a fetched one."""

    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)


def _looks_like_hash(ref: str) -> bool:
    return len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref.lower())


def _registered(row: object) -> RegisteredPolicy:
    body = json.loads(row.body)  # type: ignore[attr-defined]
    return RegisteredPolicy(
        policy=parse_policy(body, source=f"registry policy {row.policy_id}"),  # type: ignore[attr-defined]
        version=int(row.version),  # type: ignore[attr-defined]
        content_hash=str(row.content_hash),  # type: ignore[attr-defined]
        drafted_by=str(row.drafted_by),  # type: ignore[attr-defined]
        drafted_at=row.drafted_at,  # type: ignore[attr-defined]
    )
