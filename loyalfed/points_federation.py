"""A two-partner points federation on one machine: certificates, a signed agreement, node settings, members.

Used by the demo stage, the benchmark and the tests: each partner gets a node certificate from a
throwaway federation CA (its key is never written), an Ed25519 key for its data officer, both
officers sign the agreement, and each node's settings name the other as its peer on loopback.
``write_synthetic_partner`` writes a small partner folder (members, consents, transactions) under the
data contract, with phones shared between partners for ``shared`` people.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from participant_node.matching.federation_pki import issue_node_certificates
from participant_node.points.agreement_book import AGREEMENT_SUFFIX
from participant_node.points.node_settings import PointsNodeSettings
from policies.interchange_agreement import (
    ConversionTerms,
    InterchangeAgreement,
    SignedAgreement,
    sign_agreement,
)
from policies.purpose import Purpose

__all__ = [
    "NodePair",
    "build_node_pair",
    "default_agreement",
    "free_port",
    "write_synthetic_partner",
]

# The node setting's own default, unless a caller (a benchmark) sets another.
_DEFAULT_IN_FLIGHT: int = PointsNodeSettings.model_fields["transfers_in_flight"].default
_DEFAULT_PER_BATCH: int = PointsNodeSettings.model_fields["transfers_per_batch"].default

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def default_agreement(
    a: str,
    b: str,
    *,
    valid_from: datetime,
    agreement_id: str | None = None,
    member_daily_cap: int = 50_000,
    partner_daily_cap: int = 100_000_000,
) -> InterchangeAgreement:
    """A: 250 → 200 with a 1 % fee (ceiling 30); B → A at a worse 250 → 150 (round trips lose value)."""
    shared: dict[str, Any] = {
        "min_points": 250,
        "max_points": 5_000,
        "member_daily_cap": member_daily_cap,
        "member_monthly_cap": member_daily_cap * 4,
        "partner_daily_cap": partner_daily_cap,
        "fee_per_point": Decimal("0.01"),
        "fee_ceiling": 30,
    }
    return InterchangeAgreement(
        agreement_id=agreement_id or f"{a}-{b}-points",
        partners=(a, b),
        programmes={a: f"{a}-rewards", b: f"{b}-rewards"},
        currency="CNY",
        terms=(
            ConversionTerms(
                source=a,
                destination=b,
                block_in=250,
                block_out=200,
                settlement_price=Decimal("0.005"),
                **shared,
            ),
            ConversionTerms(
                source=b,
                destination=a,
                block_in=250,
                block_out=150,
                settlement_price=Decimal("0.004"),
                **shared,
            ),
        ),
        valid_from=valid_from,
        valid_until=valid_from + timedelta(days=3650),
        netting_period_days=30,
        transfer_timeout_s=120.0,
    )


def write_synthetic_partner(folder: Path, *, prefix: str, people: np.ndarray, peer: str, seed: int) -> None:
    """Members ``people`` (ints) with phones derived from them, consent to interchange naming ``peer``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"{prefix}-{int(p):07d}" for p in people]
    phones = [f"+86139{int(p):08d}" for p in people]
    joined = datetime(2024, 1, 1)  # every member joined and shopped inside the gate's 3-year retention
    pd.DataFrame({"member_id": ids, "phone": phones, "joined_at": joined}).to_csv(
        folder / "members.csv", index=False
    )
    pd.DataFrame(
        {"member_id": ids, "purpose": Purpose.POINTS_INTERCHANGE.value, "granted_at": joined, "scope": peer}
    ).to_csv(folder / "consents.csv", index=False)
    count = len(ids) * 4
    pd.DataFrame(
        {
            "member_id": np.concatenate([np.array(ids, dtype=object), rng.choice(ids, count - len(ids))]),
            "timestamp": [datetime(2024, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 700, count)],
            "amount": rng.uniform(500, 6_000, count).round(2),
        }
    ).to_csv(folder / "transactions.csv", index=False)


@dataclass(frozen=True)
class NodePair:
    settings: dict[str, PointsNodeSettings]
    settings_paths: dict[str, Path]
    ports: dict[str, int]
    agreement: InterchangeAgreement
    pki_dir: Path


def build_node_pair(
    root: Path,
    agreement: InterchangeAgreement,
    *,
    data_dirs: dict[str, Path | None],
    synchronous: str = "FULL",
    fault_seed: int | None = None,
    fault_rate: float = 0.04,
    min_link_set_size: int = 100,
    database_urls: dict[str, str] | None = None,
    audit: bool = True,
    transfers_in_flight: int | None = None,
    transfers_per_batch: int | None = None,
) -> NodePair:
    """Certificates, officers' signatures, agreement files and settings for the agreement's two partners."""
    a, b = agreement.partners
    pki_dir = root / "pki"
    issue_node_certificates(pki_dir, {a: [LOOPBACK], b: [LOOPBACK]}, days=2)
    officers = {p: Ed25519PrivateKey.generate() for p in (a, b)}
    signed = SignedAgreement(agreement=agreement)
    now = datetime.now(UTC)
    for partner, key in officers.items():
        signed = signed.with_signature(
            sign_agreement(agreement, partner=partner, officer=f"data-officer@{partner}", key=key, at=now)
        )
    officer_keys = {p: k.public_key().public_bytes_raw().hex() for p, k in officers.items()}
    ports = {a: free_port(), b: free_port()}
    secret = "5e" * 32  # the federation's identifier-keying secret, shared out of band
    settings, paths = {}, {}
    for partner in (a, b):
        peer = b if partner == a else a
        home = root / partner
        (home / "agreements").mkdir(parents=True, exist_ok=True)
        (home / "agreements" / f"{agreement.agreement_id}{AGREEMENT_SUFFIX}").write_text(
            signed.model_dump_json(indent=2), encoding="utf-8"
        )
        settings[partner] = PointsNodeSettings(
            partner_id=partner,
            database_url=(database_urls or {}).get(partner, f"sqlite:///{home / 'points.sqlite'}"),
            synchronous=synchronous,  # type: ignore[arg-type]
            agreements_dir=home / "agreements",
            officer_keys=officer_keys,
            peers={peer: f"https://{LOOPBACK}:{ports[peer]}"},
            pki_dir=pki_dir,
            partner_dir=data_dirs.get(partner),
            matching_secret=secret,
            min_link_set_size=min_link_set_size,
            audit_log=home / "audit.sqlite" if audit else None,
            fault_seed=fault_seed,
            fault_rate=fault_rate,
            in_doubt_after_s=2.0,
            transfers_in_flight=transfers_in_flight or _DEFAULT_IN_FLIGHT,
            transfers_per_batch=transfers_per_batch or _DEFAULT_PER_BATCH,
            recovery_every_s=1.0,
        )
        paths[partner] = home / "node.json"
        settings[partner].write(paths[partner])
    return NodePair(settings, paths, ports, agreement, pki_dir)


def prepare_synthetic_pair(
    root: Path,
    *,
    members: int,
    shared: int,
    synchronous: str = "NORMAL",
    fault_seed: int | None = None,
    fault_rate: float = 0.04,
    min_link_set_size: int = 100,
    database_urls: dict[str, str] | None = None,
    audit: bool = True,
    transfers_in_flight: int | None = None,
    transfers_per_batch: int | None = None,
    pair_names: tuple[str, str] = ("freshmart", "careplus"),
    moved_points_expiry_months: int | None = None,
) -> NodePair:
    """Two synthetic partners with ``members`` members each, ``shared`` of them in common, opening
    balances accrued from their transactions under the default programme, and their node settings.
    ``moved_points_expiry_months`` sets the agreement's own expiry rule for moved points."""
    from participant_node.data import load_partner
    from participant_node.points.ledger import Ledger
    from participant_node.points.opening import issue_opening_balances
    from policies.loyalty_programme import LoyaltyProgramme

    a, b = pair_names
    people = {a: np.arange(members), b: np.arange(members - shared, 2 * members - shared)}
    for partner, peer, prefix, seed in ((a, b, "FM", 1), (b, a, "CP", 2)):
        write_synthetic_partner(
            root / "data" / partner, prefix=prefix, people=people[partner], peer=peer, seed=seed
        )
    agreement = default_agreement(a, b, valid_from=datetime(2025, 1, 1, tzinfo=UTC))
    if moved_points_expiry_months is not None:
        agreement = InterchangeAgreement.model_validate(
            agreement.model_dump() | {"moved_points_expiry_months": moved_points_expiry_months}
        )
    pair = build_node_pair(
        root,
        agreement,
        data_dirs={p: root / "data" / p for p in (a, b)},
        synchronous=synchronous,
        fault_seed=fault_seed,
        fault_rate=fault_rate,
        min_link_set_size=min_link_set_size,
        database_urls=database_urls,
        audit=audit,
        transfers_in_flight=transfers_in_flight,
        transfers_per_batch=transfers_per_batch,
    )
    for partner in (a, b):
        ledger = Ledger(pair.settings[partner].database_url, synchronous="NORMAL")
        try:
            from participant_node.points.service import PointsService

            PointsService(pair.settings[partner]).close()  # creates the base accounts
            programme = LoyaltyProgramme(programme_id=f"{partner}-rewards", partner=partner)
            data = load_partner(root / "data" / partner)
            issue_opening_balances(ledger, programme, data.transactions, at=datetime(2026, 1, 1))
        finally:
            ledger.close()
    return pair
