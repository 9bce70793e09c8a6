"""Debian's Chromium under Playwright, as the console tests drive it.

Launched headless with the flags this environment needs (no sandbox as root, no GPU, no background
networking so Chromium itself calls nowhere); no browser is ever downloaded. Every request a page
makes is recorded so a test can check that none leaves loopback, and `axe_violations` runs the
bundled axe-core rules on the page as it stands.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe.min.js"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class RequestLog:
    urls: list[str] = field(default_factory=list)

    def outside_loopback(self) -> list[str]:
        outside = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname not in LOOPBACK_HOSTS:
                outside.append(url)
        return outside


def spki_pin(certificate_pem: bytes) -> str:
    """base64 SHA-256 of a certificate's public key: what ``--ignore-certificate-errors-spki-list``
    takes, so Chromium trusts exactly this server key (the federation CA is not in its trust store)."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    der = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


@contextmanager
def chromium_browser(*, trust_spki: tuple[str, ...] = ()) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    args = list(CHROMIUM_ARGS)
    if trust_spki:
        args.append(f"--ignore-certificate-errors-spki-list={','.join(trust_spki)}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            browser.close()


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """The page's accessibility violations of the given impacts (axe-core, WCAG 2 A/AA rules)."""
    page.add_script_tag(path=str(AXE_SCRIPT))
    rules = "{runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}}"
    result = page.evaluate(f"async () => await axe.run(document, {rules})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [n["target"] for n in v["nodes"]],
        }
        for v in result["violations"]
        if v["impact"] in impacts
    ]
