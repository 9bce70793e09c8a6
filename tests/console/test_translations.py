"""Every label the console shows exists in every locale, and every value the API can return has one.

Keys are found where the console's sources name them: string literals shaped like ``area.key`` in
the scripts, ``data-i18n`` attributes in the page. Families built at run time (``state.${…}``) are
checked against the enums whose values the API returns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from audit.lineage_graph import NodeKind
from coordinator.console import CONSOLE_DIR, LOCALES
from models.task import ModelKind, Task
from policies.roles import Role
from protocol.node_reports import SubjectRequestKind

JOB_STATES = ("submitted", "awaiting_approval", "queued", "running", "finished", "failed", "stopped")
_KEY_LITERAL = re.compile(r"""["']([a-z][A-Za-z]*(?:\.[A-Za-z0-9_]+)+)["']""")
_FAMILY = re.compile(r"`([a-z][A-Za-z.]*\.)\$\{")
_NOT_KEYS = re.compile(r"^(loyalfed\.|console\.css$|openlineage\.json$)")


def _sources() -> list[Path]:
    return sorted([*CONSOLE_DIR.rglob("*.js"), CONSOLE_DIR / "index.html"])


def _locale(name: str) -> dict[str, str]:
    return dict(json.loads((CONSOLE_DIR / "locales" / f"{name}.json").read_text(encoding="utf-8")))


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        keys |= {k for k in _KEY_LITERAL.findall(text) if not _NOT_KEYS.match(k)}
    return keys


def used_families() -> set[str]:
    return {prefix for path in _sources() for prefix in _FAMILY.findall(path.read_text(encoding="utf-8"))}


FAMILY_VALUES: dict[str, tuple[str, ...]] = {
    "state.": JOB_STATES,
    "task.": tuple(t.value for t in Task),
    "model.": tuple(m.value for m in ModelKind),
    "role.": tuple(r.value for r in Role),
    "lineage.kind.": tuple(k.value for k in NodeKind),
    "dsr.kind.": tuple(k.value for k in SubjectRequestKind),
}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_key_the_console_uses_is_translated(locale: str) -> None:
    messages = _locale(locale)
    missing = sorted(used_keys() - messages.keys())
    assert not missing, f"{locale}.json lacks {missing}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_value_of_a_runtime_family_is_translated(locale: str) -> None:
    messages = _locale(locale)
    assert used_families() <= FAMILY_VALUES.keys(), "a new key family: list its values in FAMILY_VALUES"
    missing = [
        f"{prefix}{v}"
        for prefix, values in FAMILY_VALUES.items()
        for v in values
        if f"{prefix}{v}" not in messages
    ]
    assert not missing, f"{locale}.json lacks {missing}"


def test_locales_have_the_same_keys_and_no_empty_text() -> None:
    english, chinese = _locale("en"), _locale("zh-CN")
    assert english.keys() == chinese.keys()
    assert all(text.strip() for text in (*english.values(), *chinese.values()))
    placeholders = re.compile(r"\{(\w+)\}")
    for key, text in english.items():
        assert set(placeholders.findall(text)) == set(placeholders.findall(chinese[key])), key


def test_the_console_fetches_nothing_from_outside_the_package() -> None:
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f"{path.name} names an outside URL"
