"""The points-interchange and PSI screens in a real browser: a data officer signs an agreement in the
page with their own key file and the signature verifies as the nodes verify it; the operator sees
the settlement mismatch flagged and the PSI counts, in Chinese.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from policies.interchange_agreement import AgreementSignature, SignedAgreement, parse_agreement
from tests.console.browser import RequestLog
from tests.console.conftest import ARTEFACTS, Console
from tests.console.test_console_screens import _open, _signed_in
from tests.coordinator.service.coordinator_federation import (
    PARTNERS,
    agreement_document,
    psi_run_record,
    settlement_totals,
)

OWN, OTHER = PARTNERS


@pytest.mark.slow
def test_officer_signs_an_agreement_in_the_page_and_operator_sees_the_mismatch(
    browser: Any, console: Console, requests_seen: RequestLog, tmp_path: Path
) -> None:
    federation = console.federation
    document = agreement_document("console-deal-2026")
    drafted = federation.call(f"operator-{OTHER}", "POST", "/points/agreements", json={"agreement": document})
    assert drafted.status_code == 201, drafted.text
    digest = drafted.json()["agreement_hash"]
    path = f"/points/agreements/{digest}/signatures"
    assert (
        federation.call(
            f"officer-{OTHER}", "POST", path, json=federation.sign_agreement(OTHER, document)
        ).status_code
        == 201
    )
    key = federation.officer_keys[OWN]
    key_file = tmp_path / "officer.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    page = _signed_in(browser, console, f"officer-{OWN}", "en", requests_seen)
    _open(page, "agreements")
    page.locator("main h1", has_text="1 awaiting your signature").wait_for()
    page.locator(f"main a[href='#/agreement/{digest}']").first.click()
    page.locator("input[type=file]").set_input_files(str(key_file))
    page.get_by_role("button", name="Sign the agreement").click()
    page.locator("main", has_text="Signed by both").wait_for()
    shown = federation.call(f"officer-{OWN}", "GET", f"/points/agreements/{digest}").json()
    signatures = tuple(
        AgreementSignature(
            agreement_hash=digest,
            **{k: s[k] for k in ("partner", "officer", "public_key", "signature", "signed_at")},
        )
        for s in shown["signatures"]
    )
    # What a node does with the officer keys it was configured with (not the coordinator's word).
    SignedAgreement(agreement=parse_agreement(document), signatures=signatures).verify(
        {p: federation.officer_keys[p].public_key() for p in PARTNERS}
    )
    page.context.close()

    totals = settlement_totals("console-deal-2026")
    assert federation.call(f"node-{OWN}", "POST", "/points/settlements", json=totals).status_code == 201
    lower = settlement_totals("console-deal-2026", points=4_750)
    assert federation.call(f"node-{OTHER}", "POST", "/points/settlements", json=lower).status_code == 201
    run = psi_run_record(OWN, OTHER, "session-console-1")
    assert federation.call(f"node-{OWN}", "POST", "/psi/runs", json=run).status_code == 201

    page = _signed_in(browser, console, f"operator-{OWN}", "zh-CN", requests_seen)
    _open(page, "settlements")
    page.locator("main .alarm[role=alert]").wait_for()
    assert "不一致" in page.locator("main table").inner_text()
    out = ARTEFACTS / "zh-CN"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "operator-settlements-mismatch.png"), full_page=True)
    _open(page, "psi")
    page.locator("main h1", has_text="隐私求交记录").wait_for()
    assert "420" in page.locator("main table").inner_text()
    page.screenshot(path=str(out / "operator-psi-runs.png"), full_page=True)
    assert requests_seen.outside_loopback() == []
    page.context.close()
