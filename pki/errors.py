"""The one exception root of ``pki``."""

from __future__ import annotations

__all__ = ["PkiError"]


class PkiError(ValueError):
    """A key, request or certificate that cannot be used; the message names the file and the rule."""
