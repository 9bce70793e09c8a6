"""The demo's MemberMatching stage on the Complete Journey federation: PSI over mTLS equals plain sets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.console import Console

from loyalfed.demo.pipeline import DemoContext
from loyalfed.demo.report import Report
from loyalfed.demo.stages.member_matching import MemberMatching
from participant_node.consent.selection import consented_members
from participant_node.data import load_federation, load_partner
from policies.purpose import Purpose
from psi.identifiers import normalise_phone


def _consented_phones(data, partner_dir: Path, peer: str) -> set[str]:
    chosen = consented_members(
        partner_dir,
        data.members,
        data.consents,
        purpose=Purpose.CROSS_BRAND_MATCHING,
        at=datetime(2020, 1, 1),
        recipient=peer,
    )
    members = data.members[data.members["member_id"].isin(chosen.member_ids)]
    return {p for p in (normalise_phone(str(v), "CN") for v in members["phone"].dropna()) if p}


def test_freshmart_brand_overlaps_equal_plain_set_intersections(cj_federation: Path, tmp_path: Path) -> None:
    federation = load_federation(cj_federation)
    data = {p.partner_id: load_partner(p.path) for p in federation.partners}
    ctx = DemoContext(out_dir=tmp_path, seed=7, console=Console(quiet=True), report=Report("test"))
    ctx.artefacts.update(federation=federation, partner_data=data)
    MemberMatching().run(ctx)

    stores = [p for p in data if p.startswith("freshmart-")]
    for brand in ("careplus", "fuelgo"):
        pooled = set().union(*(_consented_phones(data[s], federation.partner(s).path, brand) for s in stores))
        brand_phones = _consented_phones(data[brand], federation.partner(brand).path, "freshmart")
        result = ctx.artefacts["member_matching"][brand]
        assert result["cardinality"] == result["intersection_size"] == len(pooled & brand_phones) > 0
        matched_phones = {
            normalise_phone(str(phone), "CN")
            for store, ids in result["shared_member_ids"].items()
            for phone in data[store].members.set_index("member_id").loc[ids, "phone"]
        }
        assert matched_phones == pooled & brand_phones

    events = [e for e in ctx.lineage if e["event_type"] == "psi.run"]
    assert len(events) == 8 and {e["details"]["mode"] for e in events} == {"cardinality", "intersection"}
    text = str(events)
    assert "+86" not in text and "@example.com" not in text and "member_id" not in text
    assert (tmp_path / "member_matching.png").stat().st_size > 0

    # Every brand node took FreshMart's identity from its client certificate (the node default).
    answered = [e["details"] for e in events if e["details"]["psi_role"] == "responder"]
    assert len(answered) == 4
    assert {(d["peer"], d["peer_authentication"]) for d in answered} == {("freshmart", "certificate")}
    assert ("member_matching", "peers authenticated by mTLS certificate", "4 of 4") in ctx.summary
    # The demo CA's private key is never written: nothing more can be issued under it.
    issued = sorted(str(p.relative_to(tmp_path / "pki")) for p in (tmp_path / "pki").rglob("*.*"))
    assert issued == [
        "ca.crt", "partners/careplus.key", "partners/careplus.pem", "partners/freshmart.key",
        "partners/freshmart.pem", "partners/fuelgo.key", "partners/fuelgo.pem",
    ]  # fmt: skip

    first = {b: r["cardinality"] for b, r in ctx.artefacts["member_matching"].items()}
    MemberMatching().run(ctx)  # the demo may be re-run into the same folder: fresh keys, same answers
    assert {b: r["cardinality"] for b, r in ctx.artefacts["member_matching"].items()} == first
