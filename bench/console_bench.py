"""Console benchmark: how long every console page takes to load, in real Chromium, on a full store.

Fills a coordinator store through the coordinator's own domain functions (``bench/console_store.py``:
1,000 jobs through their whole life, the audit log up to 10,000 events), starts
``loyalfed coordinator serve --no-superlink`` on it as its own process, and drives Debian's Chromium
(Playwright, headless, no browser download) signed in as each role. Every screen the role's
navigation offers, and the detail pages (a job, a model card, a policy with its versions), is
loaded ``--runs`` times as a fresh document; a page's load time is from navigation start to the
moment the screen has its data and has drawn it (the console's ``loyalfed:ready:<screen>`` mark).

As a reference measured in the same run, the same pages are loaded from a small store (10 jobs),
so a busy machine shows as a slow reference rather than as a slow console. Prints one JSON object:
per page the median and every run in ms, the small-store median and the ratio, and whether every
page's median is within the target (1,000 ms).

    .venv/bin/python bench/console_bench.py [--runs 5] [--jobs 1000] [--events 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from console_store import Seats, fill_store  # bench/ is the script's own folder on sys.path

TARGET_MS = 1_000.0
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROLE_SEATS = {
    "data_officer": "officer-freshmart-north",
    "analyst": "analyst",
    "auditor": "auditor",
    "partner_operator": "operator-freshmart-north",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Store:
    state: Path
    seats: Seats
    audit_events: int
    details: dict[str, list[str]]  # role -> detail routes ("job/ID", "model/ID", "policy/ID/V")


def build_store(state: Path, *, jobs: int, events: int) -> Store:
    from sqlalchemy import func, select

    from coordinator.service.app import open_state
    from coordinator.service.settings import CoordinatorSettings
    from coordinator.store.tables import JobRow, PolicyVersionRow

    service = open_state(CoordinatorSettings(state_dir=state, superlink=False))
    try:
        with service.sessions() as session:
            admin = (state / "admin.token").read_text(encoding="ascii").strip()
            seats = fill_store(session, service.trail, admin, jobs=jobs, events=events)
            finished = session.scalars(
                select(JobRow).where(JobRow.state == "finished").order_by(JobRow.submitted_at.desc())
            ).first()
            assert finished is not None and finished.model_id
            policy_id, version = session.execute(
                select(PolicyVersionRow.policy_id, func.max(PolicyVersionRow.version))
                .group_by(PolicyVersionRow.policy_id)
                .order_by(func.max(PolicyVersionRow.version).desc())
            ).first() or ("", 0)
        details = {
            "analyst": [f"job/{finished.id}", f"model/{finished.model_id}"],
            "data_officer": [f"policy/{policy_id}/{version}"],
        }
        return Store(state, seats, service.trail.log.size, details)
    finally:
        service.trail.close()
        service.engine.dispose()


@contextmanager
def serving(state: Path) -> Iterator[str]:
    """``loyalfed coordinator serve --no-superlink`` on ``state``; yields its base URL."""
    port = _free_port()
    command = [str(Path(sys.executable).parent / "loyalfed"), "coordinator", "serve",
               "--state", str(state), "--port", str(port), "--no-superlink"]  # fmt: skip
    log = (state.parent / "coordinator.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator did not start; see {state.parent / 'coordinator.log'}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()


def _signed_in_page(browser: Any, url: str, token: str, locale: str) -> Any:
    context = browser.new_context(locale=locale)
    # The seat's token, as the sign-in form would leave it (sessionStorage), and its language.
    context.add_init_script(
        f"""try {{ sessionStorage.setItem('loyalfed.token', {json.dumps(token)});
                 localStorage.setItem('loyalfed.locale', {json.dumps(locale)}); }} catch (e) {{}}"""
    )
    page = context.new_page()
    page.goto(url + "/")
    page.locator("nav a").first.wait_for(timeout=60_000)
    return page


def _load_ms(page: Any, url: str, route: str) -> float:
    """One fresh load of ``#/route``: navigation start → the screen's data drawn (ms)."""
    name = route.split("/")[0]
    page.goto("about:blank")
    page.goto(f"{url}/#/{route}")
    page.locator(f"main[data-ready='{name}']").wait_for(timeout=60_000)
    failed = page.locator("main .error[role=alert]")
    if failed.count():
        raise RuntimeError(f"#/{route} did not load: {failed.first.inner_text()}")
    marks = page.evaluate(f"performance.getEntriesByName('loyalfed:ready:{name}').map(m => m.startTime)")
    return float(marks[-1])


def measure(browser: Any, url: str, store: Store, *, runs: int, locale: str) -> dict[str, list[float]]:
    """Every page of every role, ``runs`` fresh loads each (after one warm-up load)."""
    times: dict[str, list[float]] = {}
    for role, seat in ROLE_SEATS.items():
        page = _signed_in_page(browser, url, store.seats.tokens[seat], locale)
        screens = [a.get_attribute("data-screen") for a in page.locator("nav a").all()]
        for route in [*screens, *store.details.get(role, [])]:
            _load_ms(page, url, route)
            times[f"{role} #/{route.split('/')[0]}"] = [_load_ms(page, url, route) for _ in range(runs)]
        page.context.close()
    return times


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    # tmpfs when there is one: the fill's fsyncs are not what this measures.
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    load_before = round(os.getloadavg()[0], 2)  # a loaded machine slows every page, store or not
    with tempfile.TemporaryDirectory(prefix="loyalfed-console-bench-", dir=base) as folder:
        started = time.perf_counter()
        full = build_store(Path(folder) / "full" / "state", jobs=args.jobs, events=args.events)
        small = build_store(Path(folder) / "small" / "state", jobs=10, events=0)
        fill_s = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            try:
                with serving(full.state) as url:
                    loaded = measure(browser, url, full, runs=args.runs, locale=args.locale)
                with serving(small.state) as url:
                    reference = measure(browser, url, small, runs=args.runs, locale=args.locale)
            finally:
                browser.close()
    pages: dict[str, dict[str, Any]] = {}
    for page, samples in loaded.items():
        median = statistics.median(samples)
        ref = statistics.median(reference[page]) if page in reference else None
        pages[page] = {
            "median_ms": round(median, 1),
            "runs_ms": [round(s, 1) for s in samples],
            "small_store_median_ms": None if ref is None else round(ref, 1),
            "ratio_to_small_store": None if not ref else round(median / ref, 2),
        }
    slowest = max(pages, key=lambda p: pages[p]["median_ms"])
    return {
        "bench": "console page loads",
        "store": {"jobs": args.jobs, "audit_events": full.audit_events, "fill_seconds": round(fill_s, 1)},
        "small_store": {"jobs": 10, "audit_events": small.audit_events},
        "browser": "Debian chromium, headless, loopback HTTP",
        "machine": {"cpus": os.cpu_count(), "load_average_1m": [load_before, round(os.getloadavg()[0], 2)]},
        "locale": args.locale,
        "runs": args.runs,
        "target_ms": TARGET_MS,
        "pages": pages,
        "slowest": {"page": slowest, "median_ms": pages[slowest]["median_ms"]},
        "all_within_target": all(p["median_ms"] <= TARGET_MS for p in pages.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--locale", choices=("en", "zh-CN"), default="en")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
