"""The outcome of verifying a log: what was checked, against which key, and what is wrong where.

A :class:`Problem` names the entries it implicates as a range ``first..last``: an altered body with
a stale leaf hash implicates exactly its own entry, a stored subtree that no longer matches its
leaves implicates every entry under it (hashes cannot say which child changed). The report names a
*first bad entry* only when the evidence pins down one entry, and the range otherwise — never a
neighbour that may be intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audit.merkle_tree import EMPTY_ROOT

__all__ = ["HEAD_LEVEL", "Problem", "VerificationReport"]

# Problems found by the signed tree heads rank after every tree level (heads sit above the tree).
HEAD_LEVEL = 64


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the log: where (table, entries ``seq..last``) and what.

    ``level`` is the tree level the check ran at: the lowest one is closest to the cause (a bad leaf
    spoils every node above it); negative levels are about the file itself (format, key, schema).
    """

    table: str
    message: str
    seq: int | None = None
    level: int = 0
    last: int | None = None

    @property
    def end(self) -> int | None:
        """The last implicated entry (inclusive); ``seq`` itself for a single entry."""
        return self.seq if self.last is None else self.last

    @property
    def exact(self) -> bool:
        return self.seq is not None and self.end == self.seq

    def narrowed(self, low: int, high: int) -> Problem:
        """The same finding restricted to entries ``low..high`` when that leaves any entry."""
        if self.seq is None or self.end is None:
            return self
        start, end = max(self.seq, low), min(self.end, high)
        if start > end:
            return self
        return Problem(self.table, self.message, start, self.level, end)

    def __str__(self) -> str:
        if self.seq is None:
            return f"table {self.table}: {self.message}"
        if self.exact:
            return f"entry {self.seq}: {self.message}"
        return f"entries {self.seq}-{self.end}: {self.message}"


@dataclass
class VerificationReport:
    """The outcome of :func:`~audit.log_verification.verify_log`.

    ``ok`` only when no problem was found; a log checked only against the key it names for itself
    has the problem "no trusted public key" (``pinned`` is False): whoever rewrites the log can
    rewrite that key too.
    """

    path: Path
    tree_size: int = 0
    root_hash: str = EMPTY_ROOT.hex()
    tree_heads: int = 0
    trust_anchor: str = ""
    pinned: bool = False
    since_size: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    @property
    def first_problem(self) -> Problem | None:
        """The problem about the earliest entries: file-level ones first, then the one whose range
        ends first, then the lowest tree level (closest to the cause)."""

        def rank(problem: Problem) -> tuple[bool, int, int]:
            end = problem.end if problem.end is not None else 1 << 62
            return (problem.level >= 0, end, problem.level)

        return min(self.problems, key=rank, default=None)

    def as_dict(self) -> dict[str, object]:
        first = self.first_problem
        return {
            "ok": self.ok,
            "path": str(self.path),
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "tree_heads_checked": self.tree_heads,
            "trust_anchor": self.trust_anchor,
            "pinned": self.pinned,
            "since_size": self.since_size,
            "first_bad_entry": first.seq if first is not None and first.exact else None,
            "bad_entries": None if first is None or first.seq is None else [first.seq, first.end],
            "first_problem": None if first is None else str(first),
            "problems": [str(p) for p in self.problems[:50]],
        }
