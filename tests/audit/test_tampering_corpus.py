"""A corpus of ways to tamper with an audit log, each verified the way an auditor does.

The auditor pins the log's public key and saved a tree head earlier (``audit head --json``); the
attacker can write the database *and read the signing key file beside it* (the key sits next to the
log by default). Every case must be caught, and the report must implicate the entries that were
actually changed — never an intact neighbour. The summary line printed at the end gives the counts
(run with ``-s`` to see it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.audit_log import AuditLog, default_key_path
from audit.lineage_event import LineageEvent
from audit.log_verification import VerificationReport, verify_log
from audit.merkle_tree import TreeLevels
from audit.saved_tree_head import SavedTreeHead, read_saved_head
from audit.tree_head import TreeHeadSigner, load_or_create_signing_key

OLD_SIZE, SAVED_SIZE, SIZE = 26, 39, 52  # an older copy, the auditor's saved head, the log today


@dataclass
class Scene:
    """The log under attack and what the attacker and the auditor hold."""

    path: Path
    older_copy: Path
    saved: SavedTreeHead
    events: list[LineageEvent]
    batches: list[list[LineageEvent]]
    pinned: Ed25519PublicKey  # what the auditor pinned before the attack

    def sql(self, *statements: str, params: tuple[object, ...] = ()) -> None:
        conn = sqlite3.connect(self.path)
        with conn:
            for statement in statements:
                conn.execute(statement, params if "?" in statement else ())
        conn.close()

    def attacker_signer(self) -> TreeHeadSigner:
        """The key file lies beside the log: the attacker signs with the log's own key."""
        return TreeHeadSigner(load_or_create_signing_key(default_key_path(self.path)))

    def replace_with(self, batches: list[list[LineageEvent]], signer: TreeHeadSigner) -> None:
        """Write a fresh, internally consistent log with ``batches`` in place of the real one."""
        forged = self.path.with_name("forged.sqlite")
        with AuditLog.open(forged, signer=signer) as log:
            for batch in batches:
                log.append_batch(batch)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        shutil.move(forged, self.path)


def _body(scene: Scene, seq: int) -> str:
    conn = sqlite3.connect(scene.path)
    body = conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    conn.close()
    return str(body)


def _leaf(seq: int, body: str) -> bytes:
    return hashlib.sha256(b"\x00" + struct.pack(">Q", seq) + body.encode()).digest()


def _alter(scene: Scene, seq: int, *, leaf: bool) -> None:
    body = _body(scene, seq).replace('"time":"2026-03-01T09', '"time":"2026-03-01T08')
    assert body != _body(scene, seq)
    if leaf:
        scene.sql(
            "UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?", params=(body, _leaf(seq, body), seq)
        )
    else:
        scene.sql("UPDATE entries SET body = ? WHERE seq = ?", params=(body, seq))


def _rebuild_nodes(scene: Scene) -> None:
    conn = sqlite3.connect(scene.path)
    leaves = [bytes(h) for (h,) in conn.execute("SELECT leaf_hash FROM entries ORDER BY seq")]
    tree = TreeLevels.from_leaves(leaves)
    rows = [(lv, i, h) for lv, level in enumerate(tree.levels) if lv for i, h in enumerate(level)]
    with conn:
        conn.execute("DELETE FROM nodes")
        conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", rows)
    conn.close()


def _altered_events(scene: Scene, seq: int) -> list[list[LineageEvent]]:
    events = list(scene.events)
    events[seq] = events[seq].model_copy(update={"epsilon": 0.01})
    return [events[i : i + 13] for i in range(0, len(events), 13)]  # the original batches


def _truncate(scene: Scene, size: int) -> None:
    scene.sql(
        f"DELETE FROM entries WHERE seq >= {size}",
        f"DELETE FROM nodes WHERE ((idx + 1) << level) > {size}",
        f"DELETE FROM tree_heads WHERE tree_size > {size}",
    )


def _fork(scene: Scene) -> None:
    """Restore the older copy, then append other events after it, signed with the log's key."""
    shutil.copy(scene.older_copy, scene.path)
    with AuditLog.open(scene.path, signer=scene.attacker_signer()) as log:
        log.append_batch([e.model_copy(update={"job_id": "job-other"}) for e in scene.batches[0]])
        log.append_batch(scene.batches[1])


def _swap_key(scene: Scene) -> None:
    """Rewrite the whole log (entry 23 changed) under a new key, and replace the key file too."""
    default_key_path(scene.path).unlink()
    signer = TreeHeadSigner(load_or_create_signing_key(default_key_path(scene.path)))
    scene.replace_with(_altered_events(scene, 23), signer)


def _empty_new_log(scene: Scene) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    scene.replace_with([], TreeHeadSigner(Ed25519PrivateKey.generate()))


def _garble_file(scene: Scene) -> None:
    data = scene.path.read_bytes()
    scene.path.write_bytes(data[:4096] + b"\xff" * 512 + data[4608:])


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Callable[[Scene], None]
    expect: str  # in the first problem
    bad: tuple[int, int] | None  # the entries the report must implicate (None: no entry is bad)


CASES = [
    Case(
        "body altered", lambda s: _alter(s, 23, leaf=False), "content does not match its leaf hash", (23, 23)
    ),
    Case("body altered after the saved head", lambda s: _alter(s, 45, leaf=False), "leaf hash", (45, 45)),
    Case(
        "body and leaf hash altered",
        lambda s: _alter(s, 23, leaf=True),
        "subtree (level 1, index 11)",
        (22, 23),
    ),
    Case(
        "body, leaf hash and every subtree recomputed",
        lambda s: (_alter(s, 23, leaf=True), _rebuild_nodes(s)),
        "content differs from what the signed tree heads committed to",
        (13, 25),
    ),
    Case(
        "history rewritten and re-signed with the key beside the log",
        lambda s: s.replace_with(_altered_events(s, 23), s.attacker_signer()),
        "history rewritten",
        (0, 31),
    ),
    Case(
        "body emptied",
        lambda s: s.sql("UPDATE entries SET body = '{}' WHERE seq = 23"),
        "leaf hash",
        (23, 23),
    ),
    Case(
        "entry deleted",
        lambda s: s.sql("DELETE FROM entries WHERE seq = 30"),
        "missing or out of sequence",
        (30, 30),
    ),
    Case(
        "last entry deleted",
        lambda s: s.sql("DELETE FROM entries WHERE seq = 51"),
        "signed head covers 52",
        (51, 51),
    ),
    Case(
        "entries swapped",
        lambda s: s.sql(
            "UPDATE entries SET seq = -5 WHERE seq = 5",
            "UPDATE entries SET seq = 5 WHERE seq = 6",
            "UPDATE entries SET seq = 6 WHERE seq = -5",
        ),
        "content does not match its leaf hash",
        (5, 5),
    ),
    Case(
        "entry replayed at the end without a head",
        lambda s: s.sql("INSERT INTO entries SELECT 52, body, leaf_hash FROM entries WHERE seq = 51"),
        "content does not match its leaf hash",
        (52, 52),
    ),
    Case(
        "entry appended with its leaf hash, without a head",
        lambda s: s.sql(
            "INSERT INTO entries VALUES (52, ?, ?)", params=(_body(s, 51), _leaf(52, _body(s, 51)))
        ),
        "not covered by any signed tree head",
        (52, 52),
    ),
    Case(
        "entry inserted before the first",
        lambda s: s.sql("INSERT INTO entries SELECT -1, body, leaf_hash FROM entries WHERE seq = 0"),
        "missing or out of sequence",
        (0, 0),
    ),
    Case(
        "leaf hash altered, body intact",
        lambda s: s.sql("UPDATE entries SET leaf_hash = zeroblob(32) WHERE seq = 23"),
        "damaged index",
        None,
    ),
    Case(
        "leaf hash truncated",
        lambda s: s.sql("UPDATE entries SET leaf_hash = x'0102' WHERE seq = 23"),
        "damaged index",
        None,
    ),
    Case(
        "subtree altered",
        lambda s: s.sql("UPDATE nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 3"),
        "stored subtree (level 2, index 3) is wrong",
        None,
    ),
    Case(
        "subtree hash replaced by text",
        lambda s: s.sql("UPDATE nodes SET hash = 'zz' WHERE level = 1 AND idx = 2"),
        "stored subtree (level 1, index 2) is wrong",
        None,
    ),
    Case(
        "subtree deleted",
        lambda s: s.sql("DELETE FROM nodes WHERE level = 1 AND idx = 4"),
        "stored subtree (level 1, index 4) is missing",
        None,
    ),
    Case(
        "subtree inserted beyond the tree",
        lambda s: s.sql("INSERT INTO nodes VALUES (9, 0, zeroblob(32))"),
        "beyond the tree",
        None,
    ),
    Case(
        "latest tree head deleted",
        lambda s: s.sql("DELETE FROM tree_heads WHERE tree_size = 52"),
        "not covered by any signed tree head",
        (39, 51),
    ),
    Case(
        "middle tree head deleted",
        lambda s: s.sql("DELETE FROM tree_heads WHERE tree_size = 26"),
        "breaks the chain",
        None,
    ),
    Case(
        "tree head root forged",
        lambda s: s.sql("UPDATE tree_heads SET root_hash = ? WHERE tree_size = 13", params=("00" * 32,)),
        "bad signature on the head at size 13",
        None,
    ),
    Case(
        "tree head deleted and chain patched",
        lambda s: s.sql(
            "DELETE FROM tree_heads WHERE tree_size = 26",
            "UPDATE tree_heads SET previous_size = 13 WHERE tree_size = 39",
        ),
        "bad signature on the head at size 39",
        None,
    ),
    Case(
        "tree head inserted",
        lambda s: s.sql(
            "INSERT INTO tree_heads SELECT 20, 13, timestamp_ms, root_hash, log_id, signature"
            " FROM tree_heads WHERE tree_size = 26"
        ),
        "bad signature on the head at size 20",
        None,
    ),
    Case(
        "tree head signatures swapped",
        lambda s: s.sql(
            "UPDATE tree_heads SET signature = (SELECT signature FROM tree_heads WHERE tree_size = 26)"
            " WHERE tree_size = 13"
        ),
        "bad signature on the head at size 13",
        None,
    ),
    Case(
        "tree head timestamp made text",
        lambda s: s.sql("UPDATE tree_heads SET timestamp_ms = 'yesterday' WHERE tree_size = 26"),
        "malformed head at size 26",
        None,
    ),
    Case(
        "recorded public key replaced",
        lambda s: s.sql("UPDATE meta SET value = ? WHERE key = 'public_key'", params=("11" * 32,)),
        "the recorded public key is not the trusted key",
        None,
    ),
    Case(
        "recorded public key deleted",
        lambda s: s.sql("DELETE FROM meta WHERE key = 'public_key'"),
        "the recorded public key is not the trusted key",
        None,
    ),
    Case(
        "format changed",
        lambda s: s.sql("UPDATE meta SET value = 'loyalfed-audit/1' WHERE key = 'format'"),
        "log format 'loyalfed-audit/1'",
        None,
    ),
    Case("table dropped", lambda s: s.sql("DROP TABLE nodes"), "cannot read the log", None),
    Case("file garbled", _garble_file, "cannot read the log", None),
    Case("truncated to an earlier head", lambda s: _truncate(s, OLD_SIZE), "truncated", (26, 38)),
    Case("truncated to nothing", lambda s: _truncate(s, 0), "truncated", (0, 38)),
    Case(
        "older copy restored",
        lambda s: shutil.copy(s.older_copy, s.path),
        "truncated to an earlier head or replaced by an older copy",
        (26, 38),
    ),
    Case("older copy restored and extended (a fork)", _fork, "history rewritten", (0, 31)),
    Case("key swapped: log rewritten under a new key file", _swap_key, "not the trusted key", None),
    Case("log replaced by an empty one under a new key", _empty_new_log, "not the trusted key", None),
]


@pytest.fixture(scope="module")
def template(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, SavedTreeHead, list[list[LineageEvent]]]:
    """Built once: a log of 4 batches (52 entries), a copy taken at 26, a head saved at 39."""
    from tests.audit.conftest import flow_events

    folder = tmp_path_factory.mktemp("corpus")
    path = folder / "audit.sqlite"
    batches = [flow_events(job=f"job-{b}", model=f"model-{b}") for b in range(4)]
    signer = TreeHeadSigner(load_or_create_signing_key(default_key_path(path)))
    with AuditLog.open(path, signer=signer) as log:
        log.append_batch(batches[0])
        log.append_batch(batches[1])
    shutil.copy(path, folder / "older-copy.sqlite")
    with AuditLog.open(path, signer=signer) as log:
        log.append_batch(batches[2])
    saved = read_saved_head(path)
    with AuditLog.open(path, signer=signer) as log:
        log.append_batch(batches[3])
    return folder, saved, batches


def _scene(template: tuple[Path, SavedTreeHead, list[list[LineageEvent]]], where: Path) -> Scene:
    folder, saved, batches = template
    for name in ("audit.sqlite", "audit.key", "older-copy.sqlite"):
        shutil.copy(folder / name, where / name)
    events = [e for b in batches for e in b]
    key = load_or_create_signing_key(where / "audit.key").public_key()
    return Scene(where / "audit.sqlite", where / "older-copy.sqlite", saved, events, batches, key)


def _verify(scene: Scene, *, pinned: bool = True, since: bool = True) -> VerificationReport:
    key = scene.pinned if pinned else None
    return verify_log(scene.path, public_key=key, since=scene.saved if since else None)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tampering_is_caught_and_the_right_entries_named(template, tmp_path: Path, case: Case) -> None:
    scene = _scene(template, tmp_path)
    assert _verify(scene).ok
    case.tamper(scene)
    report = _verify(scene)
    assert not report.ok, f"{case.name}: not caught"
    first = report.first_problem
    assert first is not None and case.expect in str(first), str(first)
    named = None if first.seq is None else (first.seq, first.end)
    assert named == case.bad, f"{case.name}: named {first}"


def test_corpus_summary(template, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """How many cases each trust setting catches; the auditor's setting (pinned + saved head) all."""
    caught = {"pinned key + saved head": 0, "pinned key only": 0, "saved head only": 0}
    settings = {
        "pinned key + saved head": (True, True),
        "pinned key only": (True, False),
        "saved head only": (False, True),
    }
    for i, case in enumerate(CASES):
        (tmp_path / str(i)).mkdir()
        scene = _scene(template, tmp_path / str(i))
        case.tamper(scene)
        for name, (pinned, since) in settings.items():
            caught[name] += not _verify(scene, pinned=pinned, since=since).ok
    with capsys.disabled():
        print(f"\ntampering corpus: {len(CASES)} cases; caught " + json.dumps(caught))
    assert len(CASES) >= 25 and caught["pinned key + saved head"] == len(CASES)
    assert caught["saved head only"] == len(CASES)  # the saved head carries the key it was signed with
