"""Refuse text that looks like a member identifier before it can reach the audit log.

DESIGN.md: member identifiers (member_id, phone, email) never leave a node, and the audit log is
replicated to auditors of every organisation. Field names are fixed by the event model
(``extra="forbid"``), so the remaining risk is a *value* carrying an identifier: an e-mail address,
a phone number, or a member id pasted into a name or a details key. Redaction by default means we
refuse such values outright rather than trying to scrub them (a scrubbed event would be a lie).
"""

from __future__ import annotations

import re

__all__ = ["FORBIDDEN_FIELD_NAMES", "identifier_problem"]

# Names that only ever hold identifiers; refused as details keys or dataset names.
FORBIDDEN_FIELD_NAMES = frozenset(
    {"member_id", "member_ids", "memberid", "phone", "phone_number", "msisdn", "email", "e_mail", "mail"}
)

# RFC 5322 addr-spec, simplified to "something@something.tld": we over-match on purpose.
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
# E.164 allows up to 15 digits; national formats use spaces, dots, dashes and brackets.
# Seven or more digits in one run (separators allowed) is treated as a phone number.
_PHONE = re.compile(r"\+?\(?\d(?:[\s().-]?\d){6,}")
# Hashes and fingerprints are hex strings; they are checked by their own patterns, not here.
_MEMBER_ID_HINT = re.compile(
    r"\b(?:member|mbr|hh|household|cust(?:omer)?)[_:#-]?\d+\b"  # member-123, household_42
    r"|\b[A-Za-z]{1,4}-\d{4,}\b",  # loyalty-card style ids: FM-0004711, CP-12345
    re.IGNORECASE,
)


def identifier_problem(value: str) -> str | None:
    """Say why ``value`` looks like a member identifier, or return None when it does not.

    The reason never repeats the value (it may be the identifier itself).
    """
    if _EMAIL.search(value):
        return "looks like an e-mail address"
    if _PHONE.search(value):
        return "contains a run of 7 or more digits (looks like a phone number or member id)"
    if _MEMBER_ID_HINT.search(value):
        return "looks like a member identifier"
    if value.strip().lower() in FORBIDDEN_FIELD_NAMES:
        return "names a member-identifier field"
    return None
