"""`loyalfed psi cache …`: unbalanced PSI with the holder's set encrypted once per epoch.

Four file steps between two organisations (``psi.cached_set``): the holder builds its epoch tags
and key (``build``), a partner blinds its consented set into a query (``query``), the holder
answers it with the epoch key (``answer``), the partner un-blinds and compares (``match``). Tags,
queries and answers are the only files that cross; keys and session state stay with their owner
(written 0600). Only the partner learns the intersection; the holder learns its size.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from audit.lineage_event import EventType
from loyalfed.cli import command_lineage
from loyalfed.cli.audit_trail import audited
from loyalfed.cli.psi_files import (
    SECRET_ENV,
    federation_secret,
    id_column_values,
    identifier_kind,
    missing_file,
    print_report,
)
from loyalfed.cli.psi_member_tables import gated_member_table, moment_of_use

__all__ = ["cache"]

_TRADE_OFF_HELP = (
    "Key reuse: one epoch key answers every partner and every query of the epoch, so a partner "
    "comparing two downloads of one epoch sees who joined or left, and each answered query tests "
    "that many candidates against the tags. Use short epochs (a new label, so a new key, each time) "
    "and count the elements you answer per partner."
)
cache = typer.Typer(
    help="Unbalanced PSI against a large holder's cached encrypted set, in four file steps: build "
    "(holder), query (partner), answer (holder), match (partner). " + _TRADE_OFF_HELP,
    no_args_is_help=True,
)

_KEY_KIND, _STATE_KIND = "loyalfed-psi-cached-set-epoch-key", "loyalfed-psi-cached-set-session"
_SET = typer.Option(..., "--set", help="Partner folder (or its members file).")
_RECIPIENT = typer.Option(..., "--recipient", help="The other party's partner id (consent scope).")
_PURPOSE = typer.Option("marketing.cross_brand_matching", "--purpose", help="Consent purpose matched for.")
_AT = typer.Option(None, "--at", help="Moment of use for consent checks (ISO; default now).")
_ID = typer.Option("phone", "--id-column", help="Identifier column: phone or email.")
_REGION = typer.Option("US", "--default-region", help="Region for national phones.")
_SECRET = typer.Option(None, "--secret-file", help=f"Federation matching secret (or {SECRET_ENV}).")
_TAGS = typer.Option(..., "--tags", help="The holder's epoch tags file.")
_STATE = typer.Option(..., "--state", help="This session's state file (secret, stays with the partner).")
_JSON = typer.Option(False, "--json", help="Print only JSON to stdout.")


def _prepared(
    path: Path, id_column: str, secret_file: Path | None, region: str, gate: tuple[str, str, str | None]
) -> tuple[Any, Any]:
    """The identifiers of the members the node gate admits (``gate``: purpose, recipient, --at)."""
    from psi.identifiers import prepare_identifiers

    purpose, recipient, at = gate
    table = gated_member_table(
        path, purpose=purpose, recipient=recipient, at=moment_of_use(at), columns=(id_column,)
    )
    frame = table.frame
    values = id_column_values(frame, path, id_column)
    kind, secret = identifier_kind(id_column), federation_secret(secret_file)
    return frame, prepare_identifiers(values, kind, secret=secret, default_region=region)


def _prepared_partner(path: Path) -> str:
    from loyalfed.cli.psi_member_tables import partner_folder

    return partner_folder(path).name


def _unusable(prepared: Any) -> dict[str, int]:
    return {"malformed": prepared.malformed, "empty": prepared.empty, "duplicates": prepared.duplicates}


def _write_secret_json(path: Path, record: dict[str, Any]) -> None:
    """Keys stay with their party: the file is created readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)


def _read_secret_json(path: Path, kind: str) -> dict[str, Any]:
    if not path.exists():
        raise missing_file(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("kind") != kind:
            raise ValueError(kind)
        record["key_bytes"] = bytes.fromhex(record["key"])
    except (ValueError, KeyError, AttributeError, TypeError):
        raise ValueError(f"{path}: not a {kind} file") from None
    return record


def _read_message(path: Path, decode: Any, *args: Any) -> Any:
    """Decode a tags/query/answer file; a damaged one is a one-line error naming the file."""
    from psi.errors import PsiError

    if not path.exists():
        raise missing_file(path)
    try:
        return decode(path.read_bytes(), *args)
    except PsiError as err:
        raise ValueError(f"{path}: {err}") from err


def _spinner(text: str, as_json: bool) -> Any:
    status = Console(stderr=True).status(text, spinner="dots")
    if as_json:
        status.stop()
    return status


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@cache.command(
    "build",
    help="Holder: encrypt the member set once for an epoch. " + _TRADE_OFF_HELP,
    short_help="Holder: encrypt the member set once for an epoch (publish tags, keep the key).",
)
@audited(EventType.PSI_CACHE_EPOCH, command_lineage.psi_cache_build, role="partner_operator")
def cache_build(
    set_file: Path = _SET,
    id_column: str = _ID,
    recipient: str = _RECIPIENT,
    purpose: str = _PURPOSE,
    at: str | None = _AT,
    epoch: str = typer.Option(..., "--epoch", help="Epoch label, e.g. 2026-W47 (a new key per build)."),
    out: Path = typer.Option(..., "--out", help="Tags file to publish to partners."),
    key_out: Path = typer.Option(..., "--key-out", help="Epoch key file (secret, stays with the holder)."),
    tag_bytes: int = typer.Option(12, "--tag-bytes", min=8, max=32, help="Bytes per published tag."),
    default_region: str = _REGION,
    secret_file: Path | None = _SECRET,
    as_json: bool = _JSON,
) -> None:
    from psi.cached_set import KEY_REUSE_TRADE_OFF, CachedSetHolder
    from psi.group_engine import GroupEngine

    _frame, prepared = _prepared(set_file, id_column, secret_file, default_region, (purpose, recipient, at))
    started, size = time.perf_counter(), len(prepared.items)
    with _spinner(f"encrypting {size:,} members for epoch {epoch}", as_json), GroupEngine() as engine:
        holder, tags = CachedSetHolder.encrypt(
            prepared.items, epoch=epoch, engine=engine, tag_bytes=tag_bytes
        )
    _write(out, tags.encode())
    # The purpose and partners travel with the key, so the answers' audit events can name them.
    scope = {"purpose": purpose, "partners": [_prepared_partner(set_file), recipient]}
    _write_secret_json(
        key_out, {"kind": _KEY_KIND, "epoch": epoch, "key": holder.key.hex(), "set_size": size, **scope}
    )
    report = {
        "mode": "cached-set build (holder)",
        "epoch": epoch,
        "set_size": size,
        "unusable_rows": _unusable(prepared),
        "tags_file": str(out),
        "tags_bytes": len(tags.tags),
        "bytes_per_member": tag_bytes,
        "key_file": str(key_out),
        "seconds": round(time.perf_counter() - started, 3),
        "key_reuse": {"epoch": epoch, "trade_off": KEY_REUSE_TRADE_OFF},
    }
    print_report(report, as_json)


@cache.command("query")
@audited(EventType.PSI_RUN, command_lineage.psi_cache_query, role="partner_operator")
def cache_query(
    set_file: Path = _SET,
    id_column: str = _ID,
    recipient: str = _RECIPIENT,
    purpose: str = _PURPOSE,
    at: str | None = _AT,
    tags_file: Path = _TAGS,
    out: Path = typer.Option(..., "--out", help="Query file to send to the holder."),
    state: Path = _STATE,
    default_region: str = _REGION,
    secret_file: Path | None = _SECRET,
    as_json: bool = _JSON,
) -> None:
    """Partner: blind the member set with a fresh session key into a query for the holder."""
    from psi.cached_set import CachedSetMatcher, EpochTags, items_fingerprint
    from psi.group_engine import GroupEngine

    tags = _read_message(tags_file, EpochTags.decode)
    _frame, prepared = _prepared(set_file, id_column, secret_file, default_region, (purpose, recipient, at))
    started = time.perf_counter()
    with _spinner(f"blinding {len(prepared.items):,} members", as_json), GroupEngine() as engine:
        matcher = CachedSetMatcher(prepared.items, tags, engine=engine)
        query = matcher.query().encode()
    _write(out, query)
    record = {"kind": _STATE_KIND, "epoch": tags.epoch, "key": matcher.key.hex()}
    _write_secret_json(state, {**record, "items": items_fingerprint(prepared.items)})
    report = {
        "mode": "cached-set query (partner)",
        "epoch": tags.epoch,
        "set_size": len(prepared.items),
        "holder_set_size": tags.count,
        "unusable_rows": _unusable(prepared),
        "query_file": str(out),
        "query_bytes": len(query),
        "state_file": str(state),
        "seconds": round(time.perf_counter() - started, 3),
    }
    print_report(report, as_json)


@cache.command(
    "answer",
    help="Holder: answer a partner's query with the epoch key. " + _TRADE_OFF_HELP,
    short_help="Holder: answer a partner's query with the epoch key.",
)
@audited(EventType.PSI_CACHE_EPOCH, command_lineage.psi_cache_answer, role="partner_operator")
def cache_answer(
    key_file: Path = typer.Option(..., "--key", help="The epoch key file written by `cache build`."),
    query_file: Path = typer.Option(..., "--query", help="The partner's query file."),
    out: Path = typer.Option(..., "--out", help="Answer file to send back to the partner."),
    as_json: bool = _JSON,
) -> None:
    from psi.cached_set import KEY_REUSE_TRADE_OFF, CachedSetHolder, CachedSetMessage
    from psi.errors import PsiError
    from psi.group_engine import GroupEngine

    key = _read_secret_json(key_file, _KEY_KIND)
    query = _read_message(query_file, CachedSetMessage.decode, "query")
    started = time.perf_counter()
    with _spinner(f"answering {query.count:,} elements", as_json), GroupEngine() as engine:
        holder = CachedSetHolder(key["key_bytes"], epoch=key["epoch"], engine=engine)
        try:
            answer = holder.answer(query).encode()
        except PsiError as err:
            raise ValueError(f"{query_file}: {err}") from err
    _write(out, answer)
    report = {
        "mode": "cached-set answer (holder)",
        "epoch": key["epoch"],
        "answered_elements": query.count,
        "answer_file": str(out),
        "answer_bytes": len(answer),
        "seconds": round(time.perf_counter() - started, 3),
        "key_reuse": {"epoch": key["epoch"], "trade_off": KEY_REUSE_TRADE_OFF},
    }
    print_report(report, as_json)


@cache.command("match")
@audited(EventType.PSI_RUN, command_lineage.psi_cache_match, role="partner_operator")
def cache_match(
    set_file: Path = _SET,
    id_column: str = _ID,
    recipient: str = _RECIPIENT,
    purpose: str = _PURPOSE,
    at: str | None = _AT,
    tags_file: Path = _TAGS,
    state: Path = _STATE,
    answer_file: Path = typer.Option(..., "--answer", help="The holder's answer file."),
    out: Path | None = typer.Option(None, "--out", help="Write the matched member_ids here (CSV)."),
    default_region: str = _REGION,
    secret_file: Path | None = _SECRET,
    as_json: bool = _JSON,
) -> None:
    """Partner: un-blind the holder's answer and find which members are in its cached set."""
    from psi.cached_set import CachedSetMatcher, CachedSetMessage, EpochTags, items_fingerprint
    from psi.errors import PsiError
    from psi.group_engine import GroupEngine

    session = _read_secret_json(state, _STATE_KIND)
    tags = _read_message(tags_file, EpochTags.decode)
    answer = _read_message(answer_file, CachedSetMessage.decode, "answer")
    frame, prepared = _prepared(set_file, id_column, secret_file, default_region, (purpose, recipient, at))
    if session.get("items") != items_fingerprint(prepared.items) or session.get("epoch") != tags.epoch:
        raise ValueError(f"{set_file}: not the member set (or epoch) this session's query was built from")
    started = time.perf_counter()
    with _spinner("un-blinding and comparing", as_json), GroupEngine() as engine:
        matcher = CachedSetMatcher(prepared.items, tags, engine=engine, key=session["key_bytes"])
        try:
            found = matcher.matches(answer)
        except PsiError as err:
            raise ValueError(f"{answer_file}: {err}") from err
    report: dict[str, Any] = {
        "mode": "cached-set match (partner)",
        "epoch": tags.epoch,
        "set_size": len(prepared.items),
        "holder_set_size": tags.count,
        "cardinality": len(found),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if out is not None:
        from loyalfed.cli.csv_output import write_csv

        ids = id_column_values(frame, set_file, "member_id")
        write_csv(out, ["member_id"], ([ids[prepared.rows[i]]] for i in found))
        report["matches_written_to"] = str(out)
    print_report(report, as_json)
