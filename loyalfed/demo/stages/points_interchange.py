"""Demo stage: FreshMart ↔ CarePlus points interchange (积分通兑) between two nodes over mutual TLS.

Both data officers sign the interchange agreement (Ed25519 over its content hash); each brand's
node accrues its opening ledger from its own transactions under its programme's rules; the nodes
link the members who consented to ``loyalty.points_interchange`` naming the other brand (PSI, both
sides learn, pairwise link tokens); a few hundred members convert points both ways by two-phase
transfers between the nodes' ledgers; the nodes exchange signed settlement statements and
reconcile; the coordinator would be sent the totals only. FreshMart's four store groups form one
programme, so its node serves their pooled members (distinct FM- member ids).

The Complete Journey year ends in 2018: the nodes' clock starts in 2020 (as the matching stage's
consent checks do), so the node gate's three-year retention keeps the year's active members.
Per-transfer lineage events go to each node's own audit log (each party logs its own actions);
the link and settlement events also go to the demo's shared log.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import uvicorn

from audit.audit_log import default_key_path
from audit.log_verification import verify_log
from audit.tree_head import load_or_create_signing_key
from loyalfed.demo.pipeline import DemoContext
from loyalfed.points_federation import LOOPBACK, build_node_pair, default_agreement
from participant_node.data import Federation, PartnerData, PartnerKind
from participant_node.matching.tls_scope import node_server_config
from participant_node.points.member_directory import MemberDirectory, PooledDirectory
from participant_node.points.opening import issue_opening_balances
from participant_node.points.runner import create_points_app
from participant_node.points.service import PointsService
from participant_node.points.source_side import TransferReceipt, TransferRequest
from policies.loyalty_programme import LoyaltyProgramme

__all__ = ["PointsInterchange", "run_points_interchange"]

FRESHMART, CAREPLUS = "freshmart", "careplus"
_START = datetime(2020, 1, 1, tzinfo=UTC)
_OPENING = datetime(2018, 1, 1)  # the end of the Complete Journey year


class PointsInterchange:
    name = "points_interchange"

    def run(self, ctx: DemoContext) -> None:
        run_points_interchange(ctx)


def _clock() -> Callable[[], datetime]:
    began = time.monotonic()
    return lambda: _START + timedelta(seconds=time.monotonic() - began)


def _pooled_freshmart(federation: Federation, data: dict[str, PartnerData], folder: Path) -> PartnerData:
    """FreshMart's store groups' frames as one programme's (member ids are distinct across them)."""
    stores = [p.partner_id for p in federation.partners if p.kind == PartnerKind.STORE_GROUP]
    folder.mkdir(parents=True, exist_ok=True)
    frames = {
        t: pd.concat([getattr(data[s], t) for s in stores], ignore_index=True)
        for t in ("members", "transactions", "consents")
    }
    return replace(data[stores[0]], path=folder, campaigns=None, **frames)


def _store_groups(
    federation: Federation, data: dict[str, PartnerData], clock: Callable[[], datetime], secret_hex: str
) -> PooledDirectory:
    """FreshMart's members, each store group gated with its own consent store (withdrawals, erasures)."""
    stores = [p.partner_id for p in federation.partners if p.kind == PartnerKind.STORE_GROUP]
    secret = bytes.fromhex(secret_hex)
    return PooledDirectory(
        [
            MemberDirectory(data[s].path, secret=secret, default_region="CN", clock=clock, data=data[s])
            for s in stores
        ]
    )


@contextmanager
def _serving(services: dict[str, PointsService], ports: dict[str, int]) -> Iterator[None]:
    servers = []
    for partner, service in services.items():
        config = node_server_config(
            create_points_app(service),
            tls=service.pki.node_tls(partner),
            host=LOOPBACK,
            port=ports[partner],
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        servers.append((server, threading.Thread(target=server.run, daemon=True)))
        servers[-1][1].start()
    deadline = time.monotonic() + 30
    while not all(s.started for s, _ in servers):
        if time.monotonic() > deadline:
            raise RuntimeError("the points nodes did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)


def run_points_interchange(ctx: DemoContext, *, conversions: int = 300) -> dict[str, Any]:
    """The whole stage; returns (and leaves in ``ctx.artefacts["points_interchange"]``) its summary."""
    root = ctx.out_dir / "points"
    federation: Federation = ctx.artefacts["federation"]
    data: dict[str, PartnerData] = ctx.artefacts["partner_data"]
    frames = {
        FRESHMART: _pooled_freshmart(federation, data, root / "freshmart-data"),
        CAREPLUS: data[CAREPLUS],
    }
    dirs = {p: d.path for p, d in frames.items()}
    agreement = default_agreement(
        FRESHMART, CAREPLUS, valid_from=_START - timedelta(days=1), agreement_id="freshmart-careplus-2020"
    )
    pair = build_node_pair(root, agreement, data_dirs=dirs)  # type: ignore[arg-type]
    clock = _clock()
    services = {
        FRESHMART: PointsService(
            pair.settings[FRESHMART],
            clock=clock,
            directory=_store_groups(federation, data, clock, pair.settings[FRESHMART].matching_secret),
        ),
        CAREPLUS: PointsService(pair.settings[CAREPLUS], clock=clock, partner_data=data[CAREPLUS]),
    }
    try:
        opening = {p: _open(services[p], p, frames[p]) for p in services}
        with _serving(services, pair.ports):
            linked = services[FRESHMART].link(CAREPLUS)
            receipts = _convert(services, linked.linked, ctx.seed, conversions)
            for service in services.values():
                service.recover()
            settled = services[FRESHMART].settle(
                CAREPLUS, _START - timedelta(days=1), clock() + timedelta(days=1)
            )
            for service in services.values():
                service.stop_sending()
        checks = {p: s.ledger.verify() for p, s in services.items()}
    finally:
        for service in services.values():
            service.close()
    summary = _summary(agreement, pair, opening, linked.to_json(), receipts, settled, checks)
    _lineage(ctx, summary)
    _report(ctx, summary)
    ctx.artefacts["points_interchange"] = summary
    return summary


def _open(service: PointsService, partner: str, data: PartnerData) -> dict[str, Any]:
    programme = LoyaltyProgramme(programme_id=f"{partner}-rewards", partner=partner)
    report = issue_opening_balances(service.ledger, programme, data.transactions, at=_OPENING)
    return report.to_json()


def _convert(
    services: dict[str, PointsService], linked: int, seed: int, conversions: int
) -> list[TransferReceipt]:
    """Members with enough points convert: most FreshMart → CarePlus, some back, one retried."""
    from participant_node.points import link_store

    rng = random.Random(seed)
    fm, cp = services[FRESHMART], services[CAREPLUS]
    agreement = fm.book.latest_with(CAREPLUS)
    with fm.ledger.reading() as conn:
        fm_members = sorted(link_store.active_links(conn, agreement.agreement_id, agreement.epoch))
    with cp.ledger.reading() as conn:
        cp_members = sorted(link_store.active_links(conn, agreement.agreement_id, agreement.epoch))
    rich_fm = [m for m in fm_members if fm.balance(m)["available"] >= 1_300]
    rich_cp = [m for m in cp_members if cp.balance(m)["available"] >= 600]
    forward = [
        TransferRequest(
            f"{rng.getrandbits(64):016x}", rng.choice(rich_fm), CAREPLUS, rng.choice((250, 500, 750, 1_000))
        )
        for _ in range(conversions)
    ]
    back = [
        TransferRequest(f"{rng.getrandbits(64):016x}", rng.choice(rich_cp), FRESHMART, rng.choice((250, 500)))
        for _ in range(conversions // 10)
    ]
    receipts = fm.transfer(forward) + cp.transfer(back)
    receipts += fm.transfer(forward[:1])  # a client retry: the first outcome, nothing applied twice
    return receipts


def _summary(
    agreement: Any,
    pair: Any,
    opening: dict,
    linked: dict,
    receipts: list[TransferReceipt],
    settled: dict,
    checks: dict,
) -> dict[str, Any]:
    states = Counter(r.state for r in receipts[:-1])
    statement = settled["statement"]
    return {
        "agreement_id": agreement.agreement_id,
        "agreement_hash": agreement.content_hash(),
        "terms": [
            (t.source, t.destination, t.block_in, t.block_out, str(t.settlement_price))
            for t in agreement.terms
        ],
        "opening": opening,
        "linked": linked,
        "transfers": dict(states),
        "retry_same_outcome": receipts[-1] == receipts[0],
        "statement": statement,
        "reconciled": settled["reconciled"],
        "coordinator_totals": settled["coordinator_totals"],
        "ledgers_ok": {p: c.ok and c.pending == 0 for p, c in checks.items()},
        "audit_events": {p: _verified_events(s.audit_log) for p, s in pair.settings.items()},
    }


def _verified_events(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    # The node verifies its own log against its own pinned key (the file it signs with).
    key = load_or_create_signing_key(default_key_path(path)).public_key()
    report = verify_log(path, public_key=key)
    return int(report.tree_size) if report.ok else -1


def _lineage(ctx: DemoContext, summary: dict[str, Any]) -> None:
    partners = [FRESHMART, CAREPLUS]
    ctx.record_lineage(
        "points.linked",
        actor=f"{FRESHMART} node",
        role="node",
        partner=FRESHMART,
        partners=partners,
        purpose="loyalty.points_interchange",
        details={"linked": summary["linked"]["linked"]},
    )
    ctx.record_lineage(
        "points.settled",
        actor=f"{FRESHMART} node",
        role="node",
        partner=FRESHMART,
        partners=partners,
        purpose="loyalty.points_interchange",
        details={
            "reconciled": "reconciled" if summary["reconciled"] else "mismatch",
            "transfers": sum(d["transfers"] for d in summary["statement"]["directions"]),
        },
    )


def _report(ctx: DemoContext, summary: dict[str, Any]) -> None:
    ctx.report.add_heading("Points interchange (积分通兑)")
    ctx.report.add_text(
        "FreshMart and CarePlus signed an interchange agreement (both data officers, Ed25519 over its "
        f"hash {summary['agreement_hash'][:16]}…). Each node accrued its opening ledger from its own "
        "transactions (tiers from trailing-12-month spend), then the nodes linked, by PSI over mutual TLS, "
        "the members who consented to points interchange naming the other brand: each node keeps a "
        "pairwise link token per member and nothing else. Members converted points by two-phase transfers "
        "between the two double-entry ledgers; the nodes exchanged signed settlement statements and "
        "reconciled them. No member id, phone or e-mail crossed between the nodes; the coordinator would "
        "receive the totals below only."
    )
    ctx.report.add_table(
        "Agreement terms",
        ["from", "to", "block in", "block out", "price per point"],
        [list(map(str, t)) for t in summary["terms"]],
    )
    link = summary["linked"]
    ctx.report.add_table(
        "Linking and conversions",
        ["item", "value"],
        [
            ["FreshMart consented set", f"{link['own_set']:,}"],
            ["CarePlus consented set", f"{link['peer_set']:,}"],
            ["linked members", f"{link['linked']:,}"],
            *[[f"transfers {state}", f"{n:,}"] for state, n in sorted(summary["transfers"].items())],
            [
                "retry with the same transfer id",
                "same outcome" if summary["retry_same_outcome"] else "DIFFERENT",
            ],
            ["ledgers verified, nothing pending", str(summary["ledgers_ok"])],
            ["per-transfer events in the nodes' audit logs", str(summary["audit_events"])],
        ],
    )
    statement = summary["statement"]
    ctx.report.add_table(
        f"Settlement statement ({'reconciled' if summary['reconciled'] else 'MISMATCH'})",
        ["direction", "transfers", "points", "credited", f"amount ({statement['currency']})"],
        [
            [
                f"{d['source']} → {d['destination']}",
                str(d["transfers"]),
                f"{d['points']:,}",
                f"{d['credited']:,}",
                d["amount"],
            ]
            for d in statement["directions"]
        ],
    )
    ctx.add_summary("points_interchange", "linked members", f"{link['linked']:,}")
    ctx.add_summary("points_interchange", "transfers posted", f"{summary['transfers'].get('posted', 0):,}")
    ctx.add_summary(
        "points_interchange",
        "settlement",
        f"{'reconciled' if summary['reconciled'] else 'MISMATCH'}: {statement['payer']} pays "
        f"{statement['payee']} {statement['net_amount']} {statement['currency']}",
    )
