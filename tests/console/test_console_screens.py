"""Every role's screens in a real browser, in English and Chinese: they load, say nothing
untranslated, pass the bundled accessibility rules, stay on loopback; a data officer's approval is
signed in the page with the officer's own key and verifies where nodes verify it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from coordinator.console import LOCALES
from policies.signed_approval import SignedDecision
from tests.console.browser import RequestLog, axe_violations
from tests.console.conftest import ARTEFACTS, Console
from tests.coordinator.service.coordinator_federation import (
    PARTNERS,
    consent_count_report,
    subject_request_batch,
)

OFFICER_PARTNER = PARTNERS[0]
SCREENS: dict[str, tuple[str, ...]] = {
    f"officer-{OFFICER_PARTNER}": ("inbox", "budget", "agreements", "requests"),
    "analyst": ("jobs", "launch", "models", "compare"),
    "auditor": ("lineage", "log", "requests"),
    f"operator-{OFFICER_PARTNER}": ("nodes", "datasets", "psi", "settlements", "agreements"),
}


def _officers_inbox_data(url: str) -> bool:
    return "/api/v1/policies?pending_for=" in url


def _signed_in(
    browser: Any, console: Console, who: str, locale: str, seen: RequestLog, hold: list[Any] | None = None
) -> Any:
    """A page signed in as ``who``; with ``hold``, every API call the first screen makes is held
    (appended there, unanswered) until the test continues it."""
    context = browser.new_context(locale=locale)
    page = context.new_page()
    page.on("request", lambda request: seen.urls.append(request.url))
    if hold is not None:
        page.route(_officers_inbox_data, lambda route: hold.append(route))
    page.add_init_script(f"localStorage.setItem('loyalfed.locale', '{locale}')")
    page.goto(console.url + "/")
    page.locator("input[type=password]").fill(console.token(who))
    page.locator("form button[type=submit]").click()
    page.locator("nav a").first.wait_for()
    return page


def _open(page: Any, screen: str) -> None:
    page.goto(page.url.split("#")[0] + f"#/{screen}")
    page.locator("main h1").first.wait_for()
    page.wait_for_load_state("networkidle")


@pytest.mark.slow
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("who", sorted(SCREENS))
def test_each_roles_screens_load_translated_accessible_and_local(
    browser: Any, console: Console, requests_seen: RequestLog, who: str, locale: str
) -> None:
    page = _signed_in(browser, console, who, locale, requests_seen)
    offered = {a.get_attribute("data-screen") for a in page.locator("nav a").all()}
    assert offered == set(SCREENS[who]), "a role is offered exactly its own screens"
    out = ARTEFACTS / locale
    out.mkdir(parents=True, exist_ok=True)
    for screen in SCREENS[who]:
        _open(page, screen)
        text = page.locator("body").inner_text()
        assert "[" not in text.replace("[]", ""), f"untranslated key on {screen}: {text[:300]}"
        failed = page.locator("main .error[role=alert]")  # a screen that could not load says so here
        assert not failed.count(), failed.all_inner_texts()
        assert page.evaluate("document.documentElement.lang") == locale
        violations = axe_violations(page)
        assert violations == [], f"{who} {screen}: {violations}"
        page.screenshot(path=str(out / f"{who.split('-')[0]}-{screen}.png"), full_page=True)
    assert requests_seen.outside_loopback() == []
    page.context.close()


@pytest.mark.slow
def test_an_officer_signs_in_the_page_and_the_signature_verifies(
    browser: Any, console: Console, requests_seen: RequestLog, tmp_path: Path
) -> None:
    who = f"officer-{OFFICER_PARTNER}"
    key = console.federation.officer_keys[OFFICER_PARTNER]
    key_file = tmp_path / "officer.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    page = _signed_in(browser, console, who, "en", requests_seen)
    _open(page, "inbox")
    page.locator("main table a").first.click()
    page.locator("input[type=file]").wait_for()
    page.locator("input[type=file]").set_input_files(str(key_file))
    page.get_by_role("button", name="Sign and approve").click()
    page.locator("main [role=alert]", has_text="Approved and signed.").wait_for()
    decisions = console.federation.call(who, "GET", "/policies/churn-2026/versions/1/decisions").json()
    mine = [d for d in decisions if d["partner_id"] == OFFICER_PARTNER]
    assert len(mine) == 1
    signed = SignedDecision.from_dict({"statement": mine[0]["statement"], "signature": mine[0]["signature"]})
    statement = signed.verify([key.public_key()])  # what the node itself does with its pinned key
    assert statement.decision.value == "approved" and statement.partner_id == OFFICER_PARTNER
    # The key file's bytes never travelled: no request carried anything but the signed statement.
    assert requests_seen.outside_loopback() == []
    page.context.close()


FORCED: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "analyst",
        "POST",
        "/api/v1/policies/churn-2026/versions/1/decisions",
        {"statement": "{}", "signature": "x"},
    ),
    (
        f"officer-{OFFICER_PARTNER}",
        "POST",
        "/api/v1/jobs",
        {"task": "churn", "policy_id": "churn-2026", "epsilon": 1, "delta": 1e-5},
    ),
    (
        "auditor",
        "POST",
        "/api/v1/jobs",
        {"task": "churn", "policy_id": "churn-2026", "epsilon": 1, "delta": 1e-5},
    ),
    (
        f"operator-{OFFICER_PARTNER}",
        "POST",
        "/api/v1/policies/churn-2026/versions/1/decisions",
        {"statement": "{}", "signature": "x"},
    ),
    ("analyst", "PUT", f"/api/v1/budgets/{OFFICER_PARTNER}/2026", {"epsilon_cap": 50}),
    (f"officer-{PARTNERS[1]}", "PUT", f"/api/v1/budgets/{OFFICER_PARTNER}/2026", {"epsilon_cap": 50}),
    ("auditor", "POST", "/api/v1/policies", {"document": {}}),
    ("analyst", "GET", "/api/v1/subject-requests", {}),
    (
        f"officer-{OFFICER_PARTNER}",
        "POST",
        f"/api/v1/nodes/{OFFICER_PARTNER}/subject-requests",
        subject_request_batch(),
    ),
    ("analyst", "PUT", f"/api/v1/nodes/{OFFICER_PARTNER}/consent-counts", consent_count_report()),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("who", "method", "path", "body"), FORCED, ids=[f"{w}:{m} {p}" for w, m, p, _ in FORCED]
)
def test_an_action_the_role_may_not_take_is_refused_when_forced(
    browser: Any,
    console: Console,
    requests_seen: RequestLog,
    who: str,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    page = _signed_in(browser, console, who, "en", requests_seen)
    status = page.evaluate(
        """async ([method, path, body]) => {
             const token = sessionStorage.getItem('loyalfed.token');
             const sent = method === 'GET' ? undefined : JSON.stringify(body);
             const reply = await fetch(path, {method, body: sent,
               headers: {'Content-Type': 'application/json', Authorization: `Bearer ${token}`}});
             return reply.status;
           }""",
        [method, path, body],
    )
    assert status == 403
    page.context.close()


def _open_drawn(page: Any, screen: str) -> None:
    """Open ``screen`` right after sign-in (the first screen may still be loading) and wait until it
    has drawn its data."""
    _open(page, screen)
    page.locator(f"main[data-ready='{screen}']").wait_for(timeout=60_000)


def _opened_while_the_first_screen_loads(page: Any, held: list[Any], screen: str) -> None:
    """Open ``screen`` while the first screen's data is still on its way, then let that data arrive:
    the screen opened last is the one drawn and marked ready, not the slower one opened first."""
    deadline = time.monotonic() + 60
    while not held:
        assert time.monotonic() < deadline, "the first screen never asked for its data"
        page.wait_for_timeout(50)
    finished: list[str] = []
    page.on("requestfinished", lambda request: finished.append(request.url))
    page.evaluate("(hash) => { location.hash = hash; }", f"#/{screen}")
    page.wait_for_timeout(300)  # room for the later screen to draw first, were routes not ordered
    for route in held:
        route.continue_()
    page.unroute(_officers_inbox_data)
    page.locator(f"main[data-ready='{screen}']").wait_for(timeout=60_000)
    while not any(_officers_inbox_data(url) for url in finished):
        assert time.monotonic() < deadline, "the first screen's data never arrived"
        page.wait_for_timeout(50)
    page.wait_for_timeout(200)  # the first screen's draw would follow its data within milliseconds
    assert page.locator("main").get_attribute("data-ready") == screen, page.inner_text("main")


@pytest.mark.slow
def test_node_reports_on_the_officer_auditor_and_launch_screens(
    browser: Any, console: Console, requests_seen: RequestLog
) -> None:
    """What the nodes report reaches the screens: the officer's own requests against their deadlines
    (an open one past it is flagged), every partner's erasures and their completion for the auditor
    (in Chinese), and the consent counts per partner on the launch form, which refuses to submit
    where a partner has too few consented members for the policy's purpose."""
    own, other = PARTNERS
    federation = console.federation
    reports = {
        own: (subject_request_batch(completed=False), consent_count_report(1_230)),
        other: (subject_request_batch(erasure_id="erasure-00ff00ff00ff"), consent_count_report(None)),
    }
    for partner, (batch, counts) in reports.items():
        node = f"node-{partner}"
        assert (
            federation.call(node, "POST", f"/nodes/{partner}/subject-requests", json=batch).status_code == 200
        )
        assert (
            federation.call(node, "PUT", f"/nodes/{partner}/consent-counts", json=counts).status_code == 200
        )
    out = ARTEFACTS / "node-reports"
    out.mkdir(parents=True, exist_ok=True)

    held: list[Any] = []
    page = _signed_in(browser, console, f"officer-{own}", "en", requests_seen, hold=held)
    _opened_while_the_first_screen_loads(page, held, "requests")
    assert page.locator("main .alarm[role=alert]").count() == 1, page.inner_text("main")
    rows = page.locator("main table").inner_text()
    assert "erasure-0a1b2c3d4e5f" in rows and "access-9f8e7d6c5b4a" in rows and "00ff00ff00ff" not in rows
    assert "2 overdue" in page.inner_text("main") and rows.count("Overdue") == 2
    assert axe_violations(page) == []
    page.screenshot(path=str(out / "officer-requests.png"), full_page=True)
    page.context.close()

    page = _signed_in(browser, console, "auditor", "zh-CN", requests_seen)
    _open_drawn(page, "requests")
    rows = page.locator("main table").inner_text()
    assert own in rows and other in rows and "按时完成" in rows  # the other partner's completed erasure
    assert "access-" not in rows  # the auditor's view opens on erasures
    assert axe_violations(page) == []
    page.screenshot(path=str(out / "auditor-erasures-zh-CN.png"), full_page=True)
    page.context.close()

    page = _signed_in(browser, console, "analyst", "en", requests_seen)
    _open_drawn(page, "launch")
    checks = page.locator("main [role=status]")
    checks.locator("table").wait_for()
    text = checks.inner_text()
    assert "At least 1,230 (rounded down to 10)" in text and "Fewer than the minimum group" in text
    assert f"No usable consented members for analytics.churn_model at: {other}" in text
    assert page.get_by_role("button", name="Submit the job").is_disabled()
    assert axe_violations(page) == []
    page.screenshot(path=str(out / "analyst-launch-consent.png"), full_page=True)
    assert requests_seen.outside_loopback() == []
    page.context.close()
