"""Demo stage: FreshMart's shared members with each brand partner, by PSI over mutual TLS on loopback.

FreshMart's four store-group nodes pool their consented members (consent for
``marketing.cross_brand_matching`` scoped to the brand); each brand answers from its own consented
members through its node's PSI service (uvicorn on 127.0.0.1). Cardinality mode gives the planning
count; intersection mode gives FreshMart the shared members for cross-brand models. Each run is
a ``psi.run`` lineage event with mode, set sizes and result size — never identifiers.

The runs go over HTTPS with mutual TLS, as between organisations: the stage issues a throwaway
federation CA and node certificates into ``<out>/pki`` (``federation_pki.issue_node_certificates``;
the CA key is never written), each brand's node serves with its certificate and requires the
client's (``node_server_config``), and FreshMart's client presents its own. So the brand takes
FreshMart's partner id from the certificate (the node default, ``PeerAuthentication.CERTIFICATE``)
and FreshMart checks that the node that answered is the brand it meant.

Leaves ``ctx.artefacts["member_matching"]``: brand id -> {"cardinality": int, "shared_member_ids":
{store group id -> [member ids]}} (node-local ids of FreshMart's own members).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the demo writes PNGs, it never opens a window

import httpx
import matplotlib.pyplot as plt
import uvicorn
from fastapi import FastAPI

from loyalfed.demo.pipeline import DemoContext
from participant_node.data import Federation, PartnerData, PartnerKind
from participant_node.matching import (
    FederationCertificates,
    MatchingClient,
    MatchingConfig,
    MatchingRunRecord,
    MatchingService,
    MatchingSet,
    NodeTls,
    ProbingGuard,
    create_matching_app,
    gated_matching_set,
    issue_node_certificates,
    node_server_config,
)
from policies.purpose import Purpose
from psi.wire import PsiMode

__all__ = ["MemberMatching"]

_FIGURE = "member_matching.png"
_PKI_FOLDER = "pki"
_RETAILER = "freshmart"
_LOOPBACK = "127.0.0.1"
_AT = datetime(2020, 1, 1)  # the Complete Journey consents are dated within 2017-2019
_REGION = "CN"  # the demo's phone numbers are +86 mobiles; national formats default to China


def _demo_secret(seed: int) -> bytes:
    # A real federation distributes its matching secret out of band to members only; the demo
    # derives one from the seed so runs are reproducible.
    return hashlib.sha256(f"loyalfed-demo-matching-secret-{seed}".encode()).digest()


class MemberMatching:
    """Cardinality then intersection PSI between pooled FreshMart and each brand partner."""

    name = "member_matching"

    def run(self, ctx: DemoContext) -> None:
        federation: Federation = ctx.artefacts["federation"]
        data: dict[str, PartnerData] = ctx.artefacts["partner_data"]
        stores = [p.partner_id for p in federation.partners if p.kind == PartnerKind.STORE_GROUP]
        brands = [p.partner_id for p in federation.partners if p.kind == PartnerKind.BRAND]
        secret = _demo_secret(ctx.seed)
        records: list[MatchingRunRecord] = []
        # FreshMart opens the sessions (one certificate for its pooled store groups); each brand
        # answers at the loopback address, which its certificate therefore names.
        pki = issue_node_certificates(
            ctx.out_dir / _PKI_FOLDER, {_RETAILER: [], **{brand: [_LOOPBACK] for brand in brands}}
        )
        results: dict[str, Any] = {}
        for brand in brands:
            results[brand] = _match_brand(federation, data, stores, brand, secret, records, pki)
        for record in records:
            ctx.record_lineage("psi.run", **record.lineage_fields())
        ctx.artefacts["member_matching"] = results
        _report(ctx, results, records)


def _consented(
    ctx_data: PartnerData, federation: Federation, partner: str, peer: str, secret: bytes
) -> MatchingSet:
    return gated_matching_set(
        ctx_data,
        purpose=Purpose.CROSS_BRAND_MATCHING,
        recipient=peer,
        at=_AT,
        id_column="phone",
        secret=secret,
        default_region=_REGION,
    )


def _pooled(sets: dict[str, MatchingSet]) -> tuple[MatchingSet, list[tuple[str, str]]]:
    """FreshMart's store groups' sets as one (a household may shop at several store groups)."""
    items: list[bytes] = []
    owners: list[tuple[str, str]] = []
    seen: set[bytes] = set()
    for store, matching_set in sets.items():
        for item, member_id in zip(matching_set.items, matching_set.member_ids, strict=True):
            if item not in seen:
                seen.add(item)
                items.append(item)
                owners.append((store, member_id))
    snapshot = hashlib.sha256("".join(s.consent_snapshot_hash for s in sets.values()).encode()).hexdigest()
    pooled = MatchingSet(
        items=items,
        member_ids=[m for _, m in owners],
        consented=sum(s.consented for s in sets.values()),
        excluded_by_consent=sum(s.excluded_by_consent for s in sets.values()),
        unusable_identifiers=sum(s.unusable_identifiers for s in sets.values()),
        duplicates=sum(s.duplicates + len(s.items) for s in sets.values()) - len(items),
        consent_snapshot_hash=snapshot,
    )
    return pooled, owners


def _service(partner: str, provider: Any, records: list[MatchingRunRecord]) -> MatchingService:
    config = MatchingConfig(partner_id=partner, default_region=_REGION)
    # Fresh node state per demo run (the demo may be re-run into the same folder); a real node
    # keeps its guard file across runs so the per-day cap and the mostly-new rule hold.
    guard = ProbingGuard(":memory:", config)
    return MatchingService(config, set_provider=provider, guard=guard, on_run=records.append, now=lambda: _AT)


def _match_brand(
    federation: Federation,
    data: dict[str, PartnerData],
    stores: list[str],
    brand: str,
    secret: bytes,
    records: list[MatchingRunRecord],
    pki: FederationCertificates,
) -> dict[str, Any]:
    store_sets = {s: _consented(data[s], federation, s, brand, secret) for s in stores}
    pooled, owners = _pooled(store_sets)
    brand_service = _service(
        brand, lambda _p, peer: _consented(data[brand], federation, brand, peer, secret), records
    )
    retailer = _service(_RETAILER, lambda _p, _peer: pooled, records)
    try:
        with (
            _serve(create_matching_app(brand_service), pki.node_tls(brand)) as base_url,
            httpx.Client(base_url=base_url, verify=pki.client_context(_RETAILER), timeout=60) as http,
        ):
            client = MatchingClient(http, partner_id=_RETAILER)
            counted = retailer.initiate(client, peer=brand, mode=PsiMode.CARDINALITY)
            linked = retailer.initiate(client, peer=brand, mode=PsiMode.INTERSECTION)
    finally:
        retailer.close()
        retailer.guard.close()
        brand_service.guard.close()
    by_store: dict[str, list[str]] = {s: [] for s in stores}
    for index in linked.result.matched_indices or ():
        store, member_id = owners[index]
        by_store[store].append(member_id)
    return {
        "cardinality": counted.result.cardinality,
        "intersection_size": linked.result.cardinality,
        "freshmart_set": len(pooled.items),
        "brand_set": counted.result.responder_size,
        "shared_member_ids": by_store,
    }


@contextmanager
def _serve(app: FastAPI, tls: NodeTls) -> Iterator[str]:
    """Serve ``app`` over mTLS with uvicorn on a free loopback port for the duration of the block."""
    with socket.socket() as sock:
        sock.bind((_LOOPBACK, 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        node_server_config(
            app, tls=tls, host=_LOOPBACK, port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, name="psi-node", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the brand's PSI service did not start")
        time.sleep(0.02)
    try:
        yield f"https://{_LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _report(ctx: DemoContext, results: dict[str, Any], records: list[MatchingRunRecord]) -> None:
    ctx.report.add_heading("Member matching (PSI)")
    ctx.report.add_text(
        "FreshMart's store groups pool the members who consented to cross-brand matching with the "
        "brand; each brand answers from its own consented members through its node's PSI service "
        "(ECDH-PSI over ristretto255). The nodes spoke HTTPS with mutual TLS on loopback, each with "
        "a node certificate from a federation CA issued for this demo: a brand's node took "
        "FreshMart's partner id from FreshMart's client certificate, and FreshMart checked that the "
        "node that answered held the brand's certificate. Only blinded group elements and truncated "
        "tags crossed the wire; set sizes are public by design. Cardinality mode tells planners how "
        "many members are shared; intersection mode tells FreshMart which of its members they are."
    )
    rows = [
        [
            brand,
            f"{r['freshmart_set']:,}",
            f"{r['brand_set']:,}",
            f"{r['cardinality']:,}",
            f"{r['cardinality'] / max(r['brand_set'], 1):.0%}",
        ]
        for brand, r in results.items()
    ]
    ctx.report.add_table(
        "FreshMart × brand overlaps (consented members)",
        ["brand", "FreshMart set", "brand set", "shared (PSI)", "share of brand set"],
        rows,
    )
    _plot(ctx, results)
    ctx.report.add_figure("Shared consented members per brand partner", _FIGURE)
    for brand, r in results.items():
        ctx.add_summary("member_matching", f"FreshMart ∩ {brand}", f"{r['cardinality']:,} shared")
    ctx.add_summary("member_matching", "PSI runs recorded", str(len(records)))
    answered = [r for r in records if r.role == "responder"]
    by_certificate = sum(r.peer_authentication == "certificate" for r in answered)
    ctx.add_summary(
        "member_matching", "peers authenticated by mTLS certificate", f"{by_certificate} of {len(answered)}"
    )


def _plot(ctx: DemoContext, results: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    brands = list(results)
    positions = range(len(brands))
    ax.bar(
        [p - 0.27 for p in positions],
        [results[b]["freshmart_set"] for b in brands],
        0.27,
        label="FreshMart set",
    )
    ax.bar(list(positions), [results[b]["brand_set"] for b in brands], 0.27, label="brand set")
    ax.bar(
        [p + 0.27 for p in positions], [results[b]["cardinality"] for b in brands], 0.27, label="shared (PSI)"
    )
    ax.set_xticks(list(positions), brands)
    ax.set_ylabel("consented members")
    ax.set_title("FreshMart × brand partners: consented sets and their PSI overlap")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ctx.out_dir / _FIGURE, dpi=110)
    plt.close(fig)
