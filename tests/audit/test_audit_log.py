"""The SQLite log: appends, stored-subtree proofs equal the reference, reopen, crash safety."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.audit_log import AuditLog, default_key_path, leaf_input
from audit.errors import AuditError
from audit.lineage_event import LineageEvent
from audit.log_verification import verify_log
from audit.merkle_tree import LeafList, leaf_hash, range_hash, verify_consistency, verify_inclusion
from audit.tree_head import TreeHeadSigner, load_or_create_signing_key, verify_tree_head

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_appends_match_the_reference_tree_and_proofs_verify(
    tmp_path: Path, signer: TreeHeadSigner, flow: Callable
) -> None:
    events = flow() * 5  # 65 events in uneven batches
    with AuditLog.open(tmp_path / "a.sqlite", signer=signer) as log:
        heads = []
        for start, stop in ((0, 1), (1, 8), (8, 9), (9, 40), (40, 65)):
            assert log.append_batch(events[start:stop]) == list(range(start, stop))
            heads.append(log.tree_head())
        leaves = [leaf_hash(leaf_input(i, e.canonical_bytes())) for i, e in enumerate(events)]
        reference = LeafList(leaves)
        for head in heads:
            assert verify_tree_head(head, signer.public_key)
            assert head.root == range_hash(reference, 0, head.tree_size) == log.root(head.tree_size)
        latest = heads[-1]
        for seq in (0, 7, 31, 64):
            assert verify_inclusion(leaves[seq], seq, 65, log.inclusion_proof(seq), latest.root)
            if seq < 40:
                assert verify_inclusion(leaves[seq], seq, 40, log.inclusion_proof(seq, 40), heads[3].root)
        with pytest.raises(AuditError, match="entry 64 is not in a tree of size 40"):
            log.inclusion_proof(64, 40)
        for old in heads[:-1]:
            proof = log.consistency_proof(old.tree_size)
            assert verify_consistency(old.tree_size, 65, proof, old.root, latest.root)


def test_reopen_resumes_the_tree(tmp_path: Path, signer: TreeHeadSigner, flow: Callable) -> None:
    path = tmp_path / "a.sqlite"
    with AuditLog.open(path, signer=signer) as log:
        log.append_batch(flow() * 2)
    with AuditLog.open(path, signer=signer) as log:
        assert log.size == 26
        log.append_batch(flow())
        assert log.size == 39
    assert verify_log(path, public_key=signer.public_key).ok


def test_events_round_trip_and_queries(tmp_path: Path, signer: TreeHeadSigner, flow: Callable) -> None:
    with AuditLog.open(tmp_path / "a.sqlite", signer=signer) as log:
        log.append_batch(flow(job="job-a", model="m-a") + flow(job="job-b", model="m-b"))
        assert [e for _, e in log.events(job_id="job-b")] == flow(job="job-b", model="m-b")[5:]
        assert len(log.events(model_id="m-a")) == 1
        assert {e.partner for _, e in log.events(partner="careplus") if e.partner} == {"careplus"}
        assert len(log.events(since=T0.replace(minute=10))) == 13 - 10 + 13 - 10
        assert len(log.events(job_id="job-a", limit=2)) == 2


def test_two_writers_on_one_file_are_serialised(
    tmp_path: Path, signer: TreeHeadSigner, flow: Callable
) -> None:
    path = tmp_path / "a.sqlite"
    with AuditLog.open(path, signer=signer) as first, AuditLog.open(path, signer=signer) as second:
        assert first.append_batch(flow()) == list(range(13))
        assert second.append_batch(flow()[:2]) == [13, 14]  # picks up the other writer's entries
        assert first.append(flow()[0]) == 15
    report = verify_log(path, public_key=signer.public_key)
    assert report.ok and report.tree_size == 16 and report.tree_heads == 4  # 3 batches + the empty head


def test_wrong_key_is_refused(tmp_path: Path, signer: TreeHeadSigner, flow: Callable) -> None:
    AuditLog.open(tmp_path / "a.sqlite", signer=signer).close()
    with pytest.raises(AuditError, match="does not match"):
        AuditLog.open(tmp_path / "a.sqlite")


def test_default_key_file_is_private(tmp_path: Path) -> None:
    AuditLog.open(tmp_path / "a.sqlite").close()
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from audit.audit_log import AuditLog
    from audit.lineage_event import LineageEvent

    log = AuditLog.open(Path(sys.argv[1]))
    batch = [
        LineageEvent(event_type="job.round", time=datetime.now(UTC), actor="coordinator", role="coordinator",
                     job_id="job-crash", details={"round": i})
        for i in range(int(sys.argv[2]))
    ]
    print("ready", flush=True)
    while True:
        log.append_batch(batch)
        print(log.size, flush=True)  # acknowledged: durable and covered by a signed head
    """
)


def test_killed_writer_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """SIGKILL a writer at random moments, several times; the log always verifies, nothing acked is lost."""
    path, rng = tmp_path / "crash.sqlite", random.Random(20261122)
    for attempt in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(rng.choice([1, 7, 50, 400]))],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        deadline, acked = time.monotonic() + rng.uniform(0.05, 0.6), 0
        while time.monotonic() < deadline:
            acked = int(writer.stdout.readline())
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        report = verify_log(path, public_key=load_or_create_signing_key(default_key_path(path)).public_key())
        assert report.ok, (attempt, [str(p) for p in report.problems])
        assert report.tree_size >= acked > 0
    with AuditLog.open(path) as log:  # and the writer can carry on after the crash
        log.append(LineageEvent(event_type="job.finished", time=T0, actor="coordinator", role="coordinator"))
    assert verify_log(path, public_key=load_or_create_signing_key(default_key_path(path)).public_key()).ok
