"""The web console: static pages served by the coordinator at ``/``, using only the public ``/api/v1``.

Every asset ships inside this package (no CDN, works with no network). The pages sign in with a
platform token, show each role its own screens, and translate every label (``static/locales``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

__all__ = ["CONSOLE_DIR", "LOCALES", "mount_console"]

CONSOLE_DIR = Path(__file__).parent / "static"
LOCALES = ("en", "zh-CN")


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/``; call after the API routes so ``/api/v1`` keeps precedence."""
    app.mount("/", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
