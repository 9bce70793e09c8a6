"""The CLI's audit trail: every state-changing command appends lineage events where it commits.

DESIGN.md: every party appends the events of its own actions to the audit log, with its own
credentials; events carry ids, hashes, counts and ε, never a member identifier (the event model
refuses one). Usage in a command::

    with audit_step(EventType.POLICY_DRAFTED, actor=actor, role="analyst") as step:
        registered = registry.draft(...)                 # the change
        step.update(policy_hash=registered.content_hash) # what it was
    # on leaving the block without an error, the event is appended (durably, before returning)

The destination is resolved when the block is entered — before the change — so an unusable log
stops the command instead of leaving a change without its event:

1. the audit service, when ``LOYALFED_AUDIT_URL`` (or ``[audit] url`` in the federation's
   ``federation.toml``) is set: HTTPS with the caller's token ``LOYALFED_AUDIT_TOKEN``, the CA bundle
   ``LOYALFED_AUDIT_CA``, the log key pinned by ``LOYALFED_AUDIT_PUBLIC_KEY`` or ``[audit]
   public_key``; every response's signed tree head is checked against the newest one this user has
   seen (``$LOYALFED_DATA_DIR/audit_tree_head.json``);
2. otherwise a local log: ``LOYALFED_AUDIT_LOG``, else ``[audit] log`` (relative to the federation
   folder), else ``$LOYALFED_DATA_DIR/audit.sqlite`` (``./.loyalfed/audit.sqlite``) — where
   ``loyalfed audit verify`` looks by default.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import inspect
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from audit.audit_log import AuditLog
from audit.audit_settings import AuditSettings
from audit.errors import AuditError
from audit.lineage_event import EventType, LineageEvent
from audit.tree_head import public_key_from_hex

__all__ = [
    "AuditStep",
    "append_events",
    "audit_step",
    "audited",
    "cli_actor",
    "default_log_path",
    "file_sha256",
]

_NAME = re.compile(r"[^A-Za-z0-9 _.:/@()-]")


def default_log_path() -> Path:
    """The local log when nothing else is configured (read when a command runs, never at import)."""
    return Path(os.environ.get("LOYALFED_DATA_DIR", ".loyalfed")) / "audit.sqlite"


def cli_actor(actor: str | None, default_role: str) -> tuple[str, str]:
    """``(actor, role)`` for an event: ``--as ROLE[:PARTNER]`` / ``LOYALFED_ACTOR``, else the OS user."""
    text = actor or os.environ.get("LOYALFED_ACTOR")
    if text:
        return text.strip(), text.strip().partition(":")[0].replace("-", "_")
    user = _NAME.sub("-", getpass.getuser()).strip("-") or "operator"
    return user[:128], default_role


def _settings(federation: Path | None) -> AuditSettings:
    if federation is None or not (federation / "federation.toml").is_file():
        return AuditSettings()
    from participant_node.data import load_federation

    return load_federation(federation).audit or AuditSettings()


@dataclass
class _Sink:
    append: Callable[[Sequence[LineageEvent]], object]
    close: Callable[[], None]


def _open_sink(federation: Path | None) -> _Sink:
    settings = _settings(federation)
    url = os.environ.get("LOYALFED_AUDIT_URL") or settings.url
    if url:
        return _remote(url, settings)
    configured = os.environ.get("LOYALFED_AUDIT_LOG")
    if configured:
        path = Path(configured)
    elif settings.log is not None and federation is not None:
        path = federation / settings.log
    else:
        path = default_log_path()
    created = not path.exists()
    log = AuditLog.open(path)
    if created:
        Console(stderr=True).print(
            f"created the audit log {path}; its public key is {log.public_key_hex} — pin it "
            "([audit] public_key in federation.toml, or `loyalfed audit verify --public-key`)"
        )
    return _Sink(log.append_batch, log.close)


def _remote(url: str, settings: AuditSettings) -> _Sink:
    from audit.audit_client import AuditClient

    token = os.environ.get("LOYALFED_AUDIT_TOKEN")
    key = os.environ.get("LOYALFED_AUDIT_PUBLIC_KEY") or settings.public_key
    if not token or not key:
        raise AuditError(
            f"audit service {url}: set LOYALFED_AUDIT_TOKEN and the log's pinned key "
            "(LOYALFED_AUDIT_PUBLIC_KEY or [audit] public_key in federation.toml)"
        )
    state = default_log_path().parent / "audit_tree_head.json"
    verify: str | bool = os.environ.get("LOYALFED_AUDIT_CA") or True
    client = AuditClient(url, token, public_key_from_hex(key), state_file=state, verify=verify)
    client.tree_head()  # the first contact checks the service's head before anything changes
    return _Sink(client.append, client.close)


@dataclass
class AuditStep:
    """The events one command appends: a main event plus any added with :meth:`add`."""

    event_type: EventType
    actor: str
    role: str
    fields: dict[str, Any]
    extra: list[tuple[EventType, dict[str, Any]]] = field(default_factory=list)
    sink: _Sink | None = None
    skipped: bool = False
    # Appended instead when the command ends in an error (a job that started fails, not refused).
    refused: EventType | None = None

    def update(self, **fields: Any) -> None:
        """Add to the main event (ids, hashes, counts, ε — never a member identifier)."""
        self.fields.update({k: v for k, v in fields.items() if v is not None})

    def add(self, event_type: EventType, **fields: Any) -> None:
        """Another event of the same step, appended after the main one."""
        self.extra.append((event_type, {k: v for k, v in fields.items() if v is not None}))

    def emit(self, event_type: EventType, **fields: Any) -> None:
        """Append an event now (a job's start and rounds, while it runs)."""
        assert self.sink is not None
        self.sink.append([self.event(event_type, fields)])

    def skip(self) -> None:
        """Nothing changed: append no event."""
        self.skipped = True

    def event(self, event_type: EventType, fields: dict[str, Any]) -> LineageEvent:
        record = {"event_type": event_type, **{k: v for k, v in fields.items() if v is not None}}
        return LineageEvent.from_record(record, now=datetime.now(UTC), actor=self.actor, role=self.role)

    def events(self) -> list[LineageEvent]:
        main = [] if self.skipped else [self.event(self.event_type, self.fields)]
        return main + [self.event(kind, {"job_id": self.fields.get("job_id"), **f}) for kind, f in self.extra]


@contextmanager
def audit_step(
    event_type: EventType,
    *,
    actor: str | None = None,
    role: str = "analyst",
    federation: Path | None = None,
    refused: EventType | None = None,
    **fields: Any,
) -> Iterator[AuditStep]:
    """Append the step's events when the block completes; ``refused`` is appended if it raises a
    typed error (the refusal is an operation too), then the error propagates."""
    name, acting_role = cli_actor(actor, role)
    step = AuditStep(event_type, name, acting_role, {}, refused=refused)
    step.update(**fields)
    step.sink = _open_sink(federation)
    try:
        yield step
        step.sink.append(step.events())
    except Exception as err:
        if step.refused is not None and not isinstance(err, AuditError | click.exceptions.Exit):
            details = {"refusal": _token(err)}
            step.sink.append([step.event(step.refused, {**step.fields, "details": details})])
        raise
    finally:
        step.sink.close()


Command = TypeVar("Command", bound=Callable[..., Any])
Describe = Callable[[AuditStep, dict[str, Any]], None]


def audited(
    event_type: EventType,
    describe: Describe,
    *,
    role: str,
    refused: EventType | None = None,
    actor_param: str = "actor",
) -> Callable[[Command], Command]:
    """Wrap a Typer command in :func:`audit_step`: ``describe(step, arguments)`` fills the event once
    the command has made its change (``arguments`` are the command's bound parameters)."""

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command)

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            actor = arguments.get(actor_param)
            federation = _federation_of(arguments)
            with audit_step(
                event_type, actor=actor, role=role, federation=federation, refused=refused
            ) as step:
                result = command(*args, **kwargs)
                describe(step, arguments)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _federation_of(arguments: dict[str, Any]) -> Path | None:
    """The federation folder a command works on: its ``federation`` option, or a partner folder's parent."""
    federation = arguments.get("federation")
    if isinstance(federation, Path):
        return federation
    partner_dir = arguments.get("partner_dir")
    return partner_dir.parent if isinstance(partner_dir, Path) else None


def append_events(
    events: Sequence[LineageEvent], *, federation: Path | None = None, log_path: Path | None = None
) -> None:
    """Append already-built events to the configured destination (or to the local log ``log_path``)."""
    if log_path is not None:
        with AuditLog.open(log_path) as log:
            log.append_batch(events)
        return
    sink = _open_sink(federation)
    try:
        sink.append(events)
    finally:
        sink.close()


def _token(err: Exception) -> str:
    """The error's type as a snake_case token (messages are free text and stay out of the log)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(err).__name__).lower()[:64]


def file_sha256(path: Path) -> str:
    """A file's SHA-256 (hex): how an event names an artefact it does not carry."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
