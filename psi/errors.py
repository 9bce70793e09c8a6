"""The exception root of `psi`: every error this package raises on purpose derives from it.

Messages name the message kind, chunk and element index that broke a rule, never an identifier:
they may be shown to the other organisation's operator.
"""

from __future__ import annotations

__all__ = [
    "IdentifierError",
    "InvalidElementError",
    "PaillierError",
    "PsiError",
    "PsiProtocolError",
]


class PsiError(Exception):
    """Base class for errors raised by `psi`; its message is safe to show to an operator."""


class InvalidElementError(PsiError):
    """A received group element is not a valid encoding in the session's group."""

    def __init__(
        self,
        message: str,
        chunk: int,
        index: int,
        reason: str = "invalid element",
        *,
        rule: str = "not a canonical non-identity ristretto255 encoding (RFC 9496 §4.3.1)",
    ) -> None:
        super().__init__(f"{reason} in message {message!r}, chunk {chunk}, element {index}: {rule}")
        self.message_kind = message
        self.chunk = chunk
        self.index = index


class PsiProtocolError(PsiError):
    """A message arrived out of order, with the wrong size, version or session."""


class IdentifierError(PsiError):
    """Identifiers could not be prepared (unknown kind, missing column, weak secret)."""


class PaillierError(PsiError):
    """A Paillier key, plaintext or ciphertext is out of range."""
