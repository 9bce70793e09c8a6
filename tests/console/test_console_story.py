"""The console's whole story in a real browser against a real federation on loopback.

A coordinator and two partner nodes run as separate processes (``LoopbackFederation``: TLS on every
hop, SuperNode authentication on, every officer's key made on their own seat). Chromium trusts the
coordinator's certificate by its pinned public key only. In English, then in Chinese:

- the auditor saves the log's signed head before anything happens;
- each partner's data officer signs in, finds the policy in their inbox (in Chinese: a new version,
  shown as a diff against the version they approved in English) and approves it, signing in the
  page with their own key file;
- the analyst launches a churn job from the form and watches its progress reach ``finished``
  without reloading, then opens the model card;
- the auditor opens the job's lineage (datasets, policy, approvals, job, model) and verifies the log:
  the newest head's signature against the pinned key, consistency with the head saved before;
- what the nodes report beside their heartbeats: a member erased (and another's data exported) at
  the first partner's node shows on that partner's officer's request list and on the auditor's
  list of erasures, completed on time; the launch form shows each partner's consented members,
  as its node counted them; a PSI run the second partner's node answered (the first partner's
  node key initiating over mTLS) shows with its counts on that partner's operator's screen.

Every screen is written as a screenshot under ``test-artifacts/console/story/<locale>/``; every
request any page makes is watched, and none leaves loopback.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit.tree_head import load_or_create_signing_key
from coordinator.console import CONSOLE_DIR
from loyalfed.datasets.synthetic import SynthConfig, generate_synthetic_federation
from loyalfed.demo.job_policies import training_policy_document
from loyalfed.demo.loopback_federation import LoopbackFederation, PartnerSeat
from participant_node.consent.subject_rights import erase_member, export_member
from participant_node.data import load_partner
from participant_node.matching import MatchingClient, MatchingConfig, MatchingRefused, MatchingService
from participant_node.matching.member_set import gated_matching_set
from participant_node.matching.probing_guard import ProbingGuard
from participant_node.service.node_keys import NodeKeys
from policies.purpose import Purpose
from psi import PsiMode
from tests.console.browser import RequestLog, chromium_browser, chromium_path, spki_pin
from tests.console.conftest import ARTEFACTS

pytestmark = pytest.mark.slow(seconds=150)

PARTNERS = ("synth-01", "synth-02")
STORY = ARTEFACTS / "story"
JOB_TIMEOUT_MS = 240_000  # a ceiling for a loaded machine; the job takes well under a minute alone


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackFederation]:
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    root = tmp_path_factory.mktemp("console-story")
    # Small partners keep the two jobs short: about 1,800 members each.
    generate_synthetic_federation(root / "data", SynthConfig(members=3000, partners=len(PARTNERS), seed=3))
    seats = [PartnerSeat(partner, root / "data" / partner) for partner in PARTNERS]
    federation = LoopbackFederation(root / "federation", seats)
    try:
        federation.start(timeout_s=240)
        yield federation
    finally:
        federation.stop()


@pytest.fixture(scope="module")
def pinned_browser(federation: LoopbackFederation) -> Iterator[Any]:
    certificate = (federation.root / "coordinator-tls" / "coordinator.pem").read_bytes()
    with chromium_browser(trust_spki=(spki_pin(certificate),)) as browser:
        yield browser


def _messages(locale: str) -> dict[str, str]:
    return dict(json.loads((CONSOLE_DIR / "locales" / f"{locale}.json").read_text(encoding="utf-8")))


@dataclass
class Seat:
    """One person's browser tab, signed in with their own token, in one language."""

    page: Any
    who: str
    messages: dict[str, str]
    shots: Path
    taken: list[Path] = field(default_factory=list)

    def text(self, key: str, **params: object) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: str(params.get(m.group(1), m.group(0))), self.messages[key])

    def open(self, screen: str) -> None:
        """Go to ``#/screen`` (again, when already there) and wait until it has drawn its data."""
        self.page.evaluate(
            """(hash) => { delete document.getElementById('main').dataset.ready;
                          if (location.hash === hash) dispatchEvent(new HashChangeEvent('hashchange'));
                          else location.hash = hash; }""",
            f"#/{screen}",
        )
        self.ready(screen.split("/")[0])

    def ready(self, name: str, timeout_ms: float = 30_000) -> None:
        self.page.locator(f"main[data-ready='{name}']").wait_for(timeout=timeout_ms)
        assert not self.page.locator("main .error[role=alert]").count(), self.page.inner_text("main")

    def shot(self, name: str) -> None:
        path = self.shots / f"{len(self.taken) + 1:02d}-{self.who}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)

    def close(self) -> None:
        self.page.context.close()


@dataclass
class Story:
    browser: Any
    federation: LoopbackFederation
    locale: str
    seen: RequestLog
    shots: Path
    seats: list[Seat] = field(default_factory=list)
    taken: list[Path] = field(default_factory=list)  # every seat's screenshots, numbered in story order

    def sign_in(self, who: str, token_seat: str) -> Seat:
        context = self.browser.new_context(locale=self.locale)
        context.add_init_script(f"localStorage.setItem('loyalfed.locale', '{self.locale}')")
        page = context.new_page()
        page.on("request", lambda request: self.seen.urls.append(request.url))
        page.goto(self.federation.url + "/")
        page.locator("input[type=password]").fill(self.federation.tokens[token_seat])
        page.locator("form button[type=submit]").click()
        page.locator("nav a").first.wait_for()
        assert page.evaluate("document.documentElement.lang") == self.locale
        seat = Seat(page, who, _messages(self.locale), self.shots, taken=self.taken)
        self.seats.append(seat)
        return seat


def _officer_approves(story: Story, partner: str, policy: dict[str, Any], since: int | None) -> None:
    officer = story.sign_in(f"officer-{partner}", f"officer:{partner}")
    officer.open("inbox")
    badge = officer.page.locator("main h1 .badge")
    assert badge.inner_text() == officer.text("inbox.pending", n=1)
    officer.shot("inbox")
    officer.page.locator(f"main a[href='#/policy/{policy['policy_id']}/{policy['version']}']").click()
    officer.ready("policy")
    page_text = officer.page.inner_text("main")
    assert policy["hash"] in page_text
    if since is None:
        assert officer.text("policy.firstApproval") in page_text
    else:  # the diff against the version this officer approved before
        assert officer.text("policy.changesSince", version=since) in page_text
        assert "privacy.epsilon" in page_text
    officer.shot("policy")
    key_file = story.federation.officer_keys[partner]
    officer.page.get_by_label(officer.text("policy.keyFile"), exact=True).set_input_files(str(key_file))
    officer.page.get_by_role("button", name=officer.text("policy.approve")).click()
    officer.page.locator("main [role=alert]", has_text=officer.text("policy.approvedDone")).wait_for()
    officer.shot("approved")
    officer.close()


def _analyst_launches(story: Story, policy: dict[str, Any]) -> tuple[Seat, str]:
    analyst = story.sign_in("analyst", "analyst")
    analyst.open("launch")
    page = analyst.page
    page.get_by_label(analyst.text("launch.task"), exact=True).select_option("churn")
    page.get_by_label(analyst.text("launch.rounds"), exact=True).fill("1")
    page.get_by_label(analyst.text("launch.epsilon"), exact=True).fill("1")
    page.get_by_label(analyst.text("launch.policy"), exact=True).select_option(
        f"{policy['policy_id']}/{policy['version']}"
    )
    page.locator("main .badge", has_text=analyst.text("launch.ready")).wait_for()
    # Each partner's consented members for the policy's purpose, as its own node counted them.
    rows = page.locator("main [role=status] table tbody tr")
    assert rows.count() == len(PARTNERS)
    about = analyst.messages["launch.consentAbout"].split("{n}")[0].strip()
    for row in rows.all():
        assert about in row.inner_text(), row.inner_text()
    analyst.shot("launch")
    page.get_by_role("button", name=analyst.text("launch.submit")).click()
    analyst.ready("job")
    analyst.shot("job-started")
    # Live progress: the page polls the API; nothing may reload it while the job runs.
    page.evaluate("window.__notReloaded = true")
    return analyst, page.url.rsplit("/", 1)[-1]


def _analyst_watches_it_finish(story: Story, analyst: Seat) -> str:
    page = analyst.page
    finished = analyst.text("state.finished")
    page.locator("main p .badge", has_text=finished).wait_for(timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded === true")
    rows = page.locator("main table tbody tr")
    assert rows.count() >= 1 and "1" in rows.first.inner_text()  # round 1, its nodes and ε
    analyst.shot("job-finished")
    page.get_by_role("link", name=analyst.text("job.openModel")).click()
    analyst.ready("model")
    model_id = page.url.rsplit("/", 1)[-1]
    card = story.federation.api("analyst", "GET", f"/models/{model_id}")["card"]
    # The ROC curve, and the calibration curve where the card carries calibration bins.
    charts = 1 + bool((card.get("metrics") or {}).get("calibration"))
    assert page.locator("main svg.chart").count() == charts
    assert f"{card['metrics']['auc']:.3f}" in page.inner_text("main")
    analyst.shot("model-card")
    analyst.close()
    return model_id


def _auditor_saves_head(story: Story) -> Seat:
    auditor = story.sign_in("auditor", "auditor")
    auditor.open("log")
    auditor.page.get_by_role("button", name=auditor.text("log.saveHead")).click()
    auditor.page.locator("#status", has_text=auditor.text("log.headSaved")).wait_for()
    return auditor


def _auditor_verifies(story: Story, auditor: Seat, job_id: str, model_id: str, key_hex: str) -> None:
    auditor.open("lineage")
    page = auditor.page
    page.get_by_label(auditor.text("lineage.job"), exact=True).fill(job_id)
    page.get_by_role("button", name=auditor.text("lineage.filter")).click()
    edges = page.locator("main table tbody")
    edges.filter(has_text=f"model:{model_id}").wait_for()
    text = edges.inner_text()
    assert f"job:{job_id}" in text and "approval:" in text and "dataset:" in text, text
    assert page.locator("main svg.chart text", has_text=job_id).count() >= 1
    auditor.shot("lineage")
    auditor.open("log")
    page.get_by_label(auditor.text("log.publicKey"), exact=True).fill(key_hex)
    page.get_by_role("button", name=auditor.text("log.verifyNow")).click()
    checks = page.locator("main [role=status] li")
    checks.nth(1).wait_for()
    assert checks.count() == 2  # the head's signature, consistency since the saved head
    for item in checks.all():
        assert auditor.text("log.pass") in item.inner_text(), item.inner_text()
    auditor.shot("log-verified")


def _audit_public_key_hex(federation: LoopbackFederation) -> str:
    # The auditor pins the coordinator's audit key, published out of band (here: read beside the log).
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = load_or_create_signing_key(federation.root / "coordinator" / "audit.key")
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def _subject_requests_at_the_first_node(federation: LoopbackFederation) -> None:
    """A member erased and another's data exported at the node's own folder (``loyalfed consent``
    does the same), as the first partner's data officer would on a member's request."""
    seat = federation.partners[0]
    members = load_partner(seat.data_dir).members["member_id"].astype(str)
    erase_member(seat.data_dir, members.iloc[0], received_at=datetime.now(UTC).replace(tzinfo=None))
    export_member(seat.data_dir, members.iloc[1])


def _psi_run_between_the_nodes(federation: LoopbackFederation) -> None:
    """The first partner's node key opens a cardinality PSI run with the second partner's running
    node over mTLS; the responder node reports the run's counts to the coordinator itself."""
    initiator, responder = PARTNERS
    seat = federation.partners[0]
    keys = NodeKeys(federation.root / "nodes" / initiator)
    tls = ssl.create_default_context(cafile=str(keys.federation_ca))
    tls.load_cert_chain(str(keys.tls_certificate), str(keys.tls_key))
    config = MatchingConfig(partner_id=initiator, default_region=seat.region)
    data, secret = load_partner(seat.data_dir), keys.matching_secret.read_bytes()
    at = datetime.now(UTC).replace(tzinfo=None)

    def consented(purpose: Purpose, peer: str) -> Any:
        return gated_matching_set(
            data,
            purpose=purpose,
            recipient=peer,
            at=at,
            id_column=config.id_column,
            secret=secret,
            default_region=seat.region,
        )

    guard = ProbingGuard(":memory:", config)
    service = MatchingService(config, set_provider=consented, guard=guard)
    url = next(n["api_url"] for n in federation.api("admin", "GET", "/nodes") if n["partner_id"] == responder)
    try:
        with httpx.Client(base_url=url, verify=tls, timeout=60) as http:
            client = MatchingClient(http, partner_id=initiator)
            service.initiate(client, peer=responder, mode=PsiMode.CARDINALITY)
    except MatchingRefused:
        pass  # a refused run is a run too: the responder reports it, with its rule and no counts
    finally:
        service.close()
        guard.close()


def _until_shown(seat: Seat, screen: str, text: str, timeout_s: float = 60) -> None:
    """Open ``screen`` again until it shows ``text`` (the nodes report on their next heartbeat)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seat.open(screen)
        if text in seat.page.inner_text("main table"):
            return
        assert time.monotonic() < deadline, f"{screen} never showed {text!r}: {seat.page.inner_text('main')}"
        time.sleep(1)


def _node_reports_on_screen(story: Story) -> None:
    """The first partner's officer sees their requests; the auditor every erasure and its
    completion; the second partner's operator the PSI run its node answered, with its counts."""
    first, second = PARTNERS
    officer = story.sign_in(f"officer-{first}", f"officer:{first}")
    _until_shown(officer, "requests", officer.text("dsr.kind.access"))
    text = officer.page.inner_text("main table")
    assert text.count(officer.text("dsr.onTime")) == 2 and officer.text("dsr.kind.erasure") in text
    officer.shot("subject-requests")
    officer.close()
    auditor = story.sign_in("auditor-requests", "auditor")
    _until_shown(auditor, "requests", first)
    assert auditor.text("dsr.onTime") in auditor.page.inner_text("main table")
    auditor.shot("erasures")
    auditor.close()
    operator = story.sign_in(f"operator-{second}", f"operator:{second}")
    _until_shown(operator, "psi", first)
    run = next(r for r in story.federation.api("admin", "GET", "/psi/runs") if r["partner_id"] == second)
    assert run["peer"] == first and run["psi_role"] == "responder" and run["mode"] == "cardinality"
    if run["status"] == "completed":  # counts only: the set sizes and how many are shared
        assert run["own_set_size"] > 0 and f"{run['result_cardinality']:,}" in operator.page.inner_text(
            "main"
        )
    operator.shot("psi-runs")
    operator.close()


def _tell(story: Story) -> None:
    print(f"\nconsole story ({story.locale}) screenshots: {story.shots}")


def test_the_console_story_in_english_then_chinese(
    pinned_browser: Any, federation: LoopbackFederation
) -> None:
    seen = RequestLog()
    key_hex = _audit_public_key_hex(federation)
    body = {"name": "auditor", "role": "auditor", "organisation": "federation"}
    federation.tokens["auditor"] = federation.api("admin", "POST", "/tokens", json=body)["token"]
    operator = {"name": f"operator-{PARTNERS[1]}", "role": "partner_operator", "organisation": PARTNERS[1]}
    federation.tokens[f"operator:{PARTNERS[1]}"] = federation.api("admin", "POST", "/tokens", json=operator)[
        "token"
    ]
    _subject_requests_at_the_first_node(federation)
    _psi_run_between_the_nodes(federation)
    document = training_policy_document(Purpose.CHURN_MODEL, PARTNERS, epsilon=4.0)
    previous: dict[str, Any] | None = None
    for locale, epsilon in (("en", 4.0), ("zh-CN", 3.0)):
        shots = STORY / locale
        shots.mkdir(parents=True, exist_ok=True)
        for old in shots.glob("*.png"):
            old.unlink()
        story = Story(pinned_browser, federation, locale, seen, shots)
        auditor = _auditor_saves_head(story)
        # The analyst drafts the policy (in Chinese: a new version with a smaller ε cap).
        policy = federation.draft_policy({**document, "privacy": {"epsilon": epsilon, "delta": 1e-5}})
        for partner in PARTNERS:
            _officer_approves(story, partner, policy, since=previous["version"] if previous else None)
        analyst, job_id = _analyst_launches(story, policy)
        model_id = _analyst_watches_it_finish(story, analyst)
        job = federation.api("analyst", "GET", f"/jobs/{job_id}")
        assert job["state"] == "finished" and job["model_id"] == model_id, job
        assert job["policy_version"] == policy["version"]
        _auditor_verifies(story, auditor, job_id, model_id, key_hex)
        auditor.close()
        _node_reports_on_screen(story)
        _tell(story)
        assert len(story.taken) == 15 and all(path.exists() for path in story.taken)
        previous = policy
    assert seen.urls and seen.outside_loopback() == [], seen.outside_loopback()
