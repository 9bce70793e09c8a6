"""The exception root of `psi`: every error this package raises on purpose derives from it."""

from __future__ import annotations

__all__ = ["PsiError"]


class PsiError(Exception):
    """Base class for errors raised by `psi`; its message is safe to show to an operator."""
