"""A tombstone reveals nothing to someone holding the node's database alone; state files are private."""

from __future__ import annotations

import shutil
import sqlite3
import stat
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from participant_node.consent import ConsentStore, ConsentStoreError, store_path
from participant_node.consent.store import TAG_KEY_FILE
from participant_node.consent.subject_rights import erase_member
from policies.consent_filter import member_tags

AT = datetime(2024, 6, 1)
CANDIDATES = [f"FM-{n:07d}" for n in range(1, 201)]  # what an attacker could enumerate


def _partner(tmp_path: Path) -> Path:
    folder = tmp_path / "freshmart-north"
    folder.mkdir()
    members = "".join(f"{m},+86138{n:08d},2020-01-01\n" for n, m in enumerate(CANDIDATES))
    (folder / "members.csv").write_text("member_id,phone,joined_at\n" + members, encoding="utf-8")
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount\n" + "".join(f"{m},2024-01-01T10:00:00,3.5\n" for m in CANDIDATES)
    )
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at\n"
        + "".join(f"{m},analytics.churn_model,2024-01-01\n" for m in CANDIDATES)
    )
    return folder


def _every_text_value(database: Path) -> set[str]:
    """Every text value stored in any table of the SQLite file, as an attacker would dump it."""
    found: set[str] = set()
    with sqlite3.connect(database) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                found |= {str(value) for value in row if value is not None}
    return found


def _tombstone_tags(database: Path) -> set[int]:
    with sqlite3.connect(database) as conn:
        return {int(t, 16) for (t,) in conn.execute("SELECT member_tag FROM erasure_requests")}


def _recovered(tags: set[int], keys: set[str]) -> set[str]:
    candidates = pd.Series(CANDIDATES)
    hits: set[str] = set()
    for key in keys:
        if len(key.encode("utf-8")) == 16:
            computed = member_tags(candidates, key)
            hits |= {m for m, tag in zip(CANDIDATES, computed, strict=True) if int(tag) in tags}
    return hits


def test_erased_member_cannot_be_recovered_from_the_database_alone(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    erase_member(folder, "FM-0000042", received_at=AT)
    stolen = tmp_path / "stolen.sqlite"
    shutil.copy(store_path(folder), stolen)  # the database file, without the node's key file
    raw = stolen.read_bytes()
    assert b"FM-0000042" not in raw
    tags = _tombstone_tags(stolen)
    assert len(tags) == 1
    # Every 16-character value in the file tried as the tag key, against every candidate id: nothing.
    assert _recovered(tags, _every_text_value(stolen)) == set()
    # The same attack with the node's key file succeeds: the test would notice a key in the database.
    key = (store_path(folder).parent / TAG_KEY_FILE).read_text().strip()
    assert _recovered(tags, {key}) == {"FM-0000042"}
    assert key.encode() not in raw


def test_state_files_and_folder_are_private(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    ConsentStore.at_partner(folder).close()
    state = store_path(folder).parent
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(store_path(folder).stat().st_mode) == 0o600
    assert stat.S_IMODE((state / TAG_KEY_FILE).stat().st_mode) == 0o600


def test_key_of_an_older_store_moves_out_of_the_database(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    ConsentStore.at_partner(folder).close()
    key_file = store_path(folder).parent / TAG_KEY_FILE
    legacy = "Abcdefgh12345678"
    key_file.unlink()
    with sqlite3.connect(store_path(folder)) as conn:  # how stores kept the key before
        conn.execute("INSERT INTO meta VALUES ('tag_key', ?)", (legacy,))
    store = ConsentStore.at_partner(folder)
    store.close()
    assert store.tag_key == legacy and key_file.read_text() == legacy
    assert legacy.encode() not in store_path(folder).read_bytes()


def test_tombstones_without_their_key_fail_closed(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    erase_member(folder, "FM-0000007", received_at=AT)
    (store_path(folder).parent / TAG_KEY_FILE).unlink()
    with pytest.raises(ConsentStoreError, match="member tag key missing"):
        ConsentStore.at_partner(folder)
