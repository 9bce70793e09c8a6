"""Member identifiers → PSI items: normalise, deduplicate, key with the federation secret.

Phone numbers become E.164 (ITU-T E.164, via Google's libphonenumber port ``phonenumbers``) with a
default region for national formats; e-mail addresses are trimmed and lower-cased. Each
normalised identifier is then keyed with HMAC-SHA-512 (RFC 2104) under the federation secret
before it is hashed to the group: phone numbers have so little entropy that an outsider who saw
a blinded set could otherwise test every number (a dictionary attack); without the secret it
cannot compute a single item.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

from psi.errors import IdentifierError

__all__ = [
    "IdentifierKind",
    "PreparedSet",
    "normalise_email",
    "normalise_phone",
    "prepare_identifiers",
]

MIN_SECRET_BYTES = 16


class IdentifierKind(StrEnum):
    """The identifier columns PSI can match on."""

    PHONE = "phone"
    EMAIL = "email"


def normalise_phone(value: str, default_region: str = "US") -> str | None:
    """E.164 form of ``value`` (``+15551234567``), or None if it is not a possible number."""
    text = value.strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value: str) -> str | None:
    """Trimmed, lower-cased address, or None if it is not ``local@domain``."""
    text = value.strip().lower()
    local, at, domain = text.partition("@")
    if not at or not local or "." not in domain or "@" in domain or any(c.isspace() for c in text):
        return None
    return text


@dataclass(frozen=True)
class PreparedSet:
    """Keyed PSI items and, for each, the row of the input it came from.

    ``malformed`` and ``empty`` count rows whose identifier could not be used, ``duplicates``
    rows whose identifier repeated an earlier one (the first row is kept).
    """

    items: list[bytes]
    rows: list[int]
    malformed: int
    empty: int
    duplicates: int


def prepare_identifiers(
    values: Iterable[object],
    kind: IdentifierKind,
    *,
    secret: bytes,
    default_region: str = "US",
) -> PreparedSet:
    """Normalise ``values`` (None/NaN/blank count as empty), deduplicate and key them.

    Parameters
    ----------
    values
        One identifier per input row.
    kind
        How to normalise them.
    secret
        The federation's matching secret (at least 16 bytes), shared by members of the federation
        only; both sides of a session must use the same one.
    default_region
        ISO 3166 region for phone numbers written without a country code.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise IdentifierError(f"the federation matching secret must be at least {MIN_SECRET_BYTES} bytes")
    # RFC 2104 with the kind as a prefix: a phone and an e-mail never produce the same item.
    keyed = hmac.new(secret, kind.value.encode() + b":", hashlib.sha512)
    seen: set[bytes] = set()
    items: list[bytes] = []
    rows: list[int] = []
    malformed = empty = duplicates = 0
    for row, value in enumerate(values):
        if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
            empty += 1
            continue
        text = str(value)
        if kind == IdentifierKind.EMAIL:
            normal = normalise_email(text)
        else:
            normal = normalise_phone(text, default_region)
        if normal is None:
            malformed += 1
            continue
        mac = keyed.copy()
        mac.update(normal.encode("utf-8"))
        item = mac.digest()
        if item in seen:
            duplicates += 1
            continue
        seen.add(item)
        items.append(item)
        rows.append(row)
    return PreparedSet(items, rows, malformed, empty, duplicates)
