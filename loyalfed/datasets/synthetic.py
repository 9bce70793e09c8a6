"""Synthetic federations at scale, calibrated on Complete Journey marginals, written chunk by chunk.

Each member has a home partner; a share of them (``cross_enrolled_share``) also joined a second
partner, with the same phone and email and that partner's own member id, and make a share of
their baskets there, so PSI finds realistic overlaps. Transactions are one row per basket
(``basket_id`` is implied). Behaviour follows `loyalfed.datasets.synthetic_behaviour`, consents
`loyalfed.datasets.consent_generation`, campaigns a fixed schedule of 24 five-week campaigns with
calibrated exposure and redemption rates (redemption more likely for frequent shoppers and
impossible after a member lapsed). Members are generated in chunks of ``chunk_members`` and each
chunk is appended as one row group per file, so memory stays bounded whatever ``members`` is.
Output is reproducible for a given seed and chunk size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from loyalfed.datasets.calibration import COMPLETE_JOURNEY_CALIBRATION, Calibration
from loyalfed.datasets.consent_generation import generate_consents
from loyalfed.datasets.member_identity import contact_identifiers
from loyalfed.datasets.parquet_files import COMPRESSION
from loyalfed.datasets.synthetic_behaviour import Baskets, MemberBehaviour, draw_baskets, draw_members
from participant_node.data.federation import FEDERATION_FILE

__all__ = ["SynthConfig", "SynthResult", "generate_synthetic_federation"]

_US = np.timedelta64(1, "us")
_US_PER_DAY = 86_400 * 1_000_000
_CAMPAIGNS, _CAMPAIGN_DAYS = 24, 35
_SCHEMAS = {
    "members": pa.schema(
        [("member_id", pa.string()), ("phone", pa.string()), ("email", pa.string()),
         ("joined_at", pa.timestamp("us")), ("points_balance", pa.int64()),
         ("age_band", pa.string()), ("income_band", pa.string())]
    ),
    "transactions": pa.schema(
        [("member_id", pa.string()), ("timestamp", pa.timestamp("us")), ("amount", pa.float64()),
         ("store_id", pa.string()), ("discount", pa.float64())]
    ),
    "consents": pa.schema(
        [("member_id", pa.string()), ("purpose", pa.string()), ("granted_at", pa.timestamp("us")),
         ("expires_at", pa.timestamp("us")), ("withdrawn_at", pa.timestamp("us")),
         ("lawful_basis", pa.string()), ("scope", pa.string()), ("cross_border", pa.bool_()),
         ("sensitive", pa.bool_())]
    ),
    "campaigns": pa.schema(
        [("member_id", pa.string()), ("campaign_id", pa.string()), ("start_date", pa.timestamp("us")),
         ("end_date", pa.timestamp("us")), ("campaign_type", pa.string()),
         ("redeemed_at", pa.timestamp("us"))]
    ),
}  # fmt: skip


class SynthConfig(BaseModel):
    """What to generate. Changing ``chunk_members`` changes the random draws, not their distribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    members: int = Field(gt=0, le=100_000_000)
    partners: int = Field(default=4, ge=1, le=64)
    seed: int = 7
    start: date = date(2017, 1, 1)  # the Complete Journey's first day, so the models' defaults apply
    days: int = Field(default=365, ge=28, le=3_650)
    chunk_members: int = Field(default=20_000, ge=100)
    cross_enrolled_share: float = Field(default=0.2, ge=0.0, le=1.0)
    second_partner_basket_share: float = Field(default=0.3, ge=0.0, le=1.0)
    stores_per_partner: int = Field(default=20, ge=1, le=10_000)
    # Members who join during the period (joined_at = their first day), and the share of those who
    # stop within two months (synthetic_behaviour): 0 keeps every member active from the start.
    newcomer_share: float = Field(default=0.0, ge=0.0, le=1.0)
    newcomer_early_lapse: float = Field(default=0.0, ge=0.0, le=1.0)

    def partner_ids(self) -> list[str]:
        return [f"synth-{p + 1:02d}" for p in range(self.partners)]


@dataclass(frozen=True)
class SynthResult:
    out: Path
    config: SynthConfig
    partners: dict[str, dict[str, int]]  # partner id -> rows per file kind
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        config = self.config.model_dump(mode="json")
        return {"federation": str(self.out), "config": config, "partners": self.partners,
                "seconds": round(self.seconds, 2)}  # fmt: skip


def generate_synthetic_federation(
    out: Path | str,
    config: SynthConfig,
    *,
    calibration: Calibration = COMPLETE_JOURNEY_CALIBRATION,
    on_progress: Callable[[int], None] | None = None,
) -> SynthResult:
    """Write a ``config.partners``-partner federation of ``config.members`` members into ``out``."""
    started = time.perf_counter()
    out = Path(out)
    ids = config.partner_ids()
    counts = {pid: dict.fromkeys(_SCHEMAS, 0) for pid in ids}
    # One writer thread overlaps Parquet encoding (which releases the GIL) with drawing the next
    # chunk; waiting for the previous write before queueing the next bounds memory to two chunks.
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as pool:
        writers = {
            (pid, kind): stack.enter_context(_writer(out / pid / f"{kind}.parquet", schema))
            for pid in ids
            for kind, schema in _SCHEMAS.items()
        }
        pending: Future[None] | None = None
        for number, low in enumerate(range(0, config.members, config.chunk_members)):
            high = min(low + config.chunk_members, config.members)
            rng = np.random.default_rng([config.seed, 1_000, number])
            tables = _chunk_tables(low, high, config, calibration, rng)
            for (pid, kind), table in tables:
                counts[pid][kind] += table.num_rows
            if pending is not None:
                pending.result()
            pending = pool.submit(_write_chunk, writers, tables)
            if on_progress is not None:
                on_progress(high)
        if pending is not None:
            pending.result()
    _write_manifest(out, ids)
    (out / "synthetic_build.json").write_text(
        json.dumps({"config": config.model_dump(mode="json"), "partners": counts}, indent=2, sort_keys=True)
        + "\n"
    )
    return SynthResult(out, config, counts, seconds=time.perf_counter() - started)


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    # zstd level 1: the same ratio as the default level on these columns at about 60 % of the time.
    return pq.ParquetWriter(path, schema, compression=COMPRESSION, compression_level=1)


def _write_chunk(
    writers: dict[tuple[str, str], pq.ParquetWriter], tables: list[tuple[tuple[str, str], pa.Table]]
) -> None:
    for key, table in tables:
        writers[key].write_table(table)


def _chunk_tables(
    low: int, high: int, config: SynthConfig, calibration: Calibration, rng: np.random.Generator
) -> list[tuple[tuple[str, str], pa.Table]]:
    index = np.arange(low, high, dtype=np.int64)
    home = rng.integers(0, config.partners, len(index))
    second = _second_partner(home, config, rng)
    behaviour = draw_members(
        len(index),
        config.days,
        calibration,
        rng,
        newcomer_share=config.newcomer_share,
        newcomer_early_lapse=config.newcomer_early_lapse,
    )
    baskets = draw_baskets(behaviour, config.days, calibration, rng)
    moved = (second[baskets.member] >= 0) & (
        rng.random(len(baskets.member)) < config.second_partner_basket_share
    )
    basket_partner = np.where(moved, second[baskets.member], home[baskets.member])
    contacts = contact_identifiers(index, seed=config.seed)
    start = np.datetime64(config.start, "us")
    tables: list[tuple[tuple[str, str], pa.Table]] = []
    for p, pid in enumerate(config.partner_ids()):
        enrolled = np.flatnonzero((home == p) | (second == p))
        selected = np.flatnonzero(basket_partner == p)
        frames = _partner_frames(p, enrolled, index, contacts, baskets, selected, config, calibration, rng)
        if behaviour.first_us is not None:  # a newcomer joins on its first day of activity
            joined = frames["members"]["joined_at"].to_numpy(dtype="datetime64[us]")
            first = start + behaviour.first_us[enrolled] * _US
            frames["members"]["joined_at"] = np.where(behaviour.first_us[enrolled] > 0, first, joined)
        home_members = np.flatnonzero(home == p)
        frames["campaigns"] = _campaigns(
            p, home_members, behaviour, frames["_ids"], start, config, calibration, rng
        )
        for kind, schema in _SCHEMAS.items():
            frame = frames[kind]
            if isinstance(frame, pd.DataFrame):
                frame = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            tables.append(((pid, kind), frame.replace_schema_metadata(None)))
    return tables


def _second_partner(home: np.ndarray, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Index of the second partner a member joined, or -1."""
    if config.partners < 2:
        return np.full(len(home), -1)
    shift = rng.integers(1, config.partners, len(home))
    joined = rng.random(len(home)) < config.cross_enrolled_share
    return np.where(joined, (home + shift) % config.partners, -1)


def _partner_frames(
    p: int,
    enrolled: np.ndarray,
    index: np.ndarray,
    contacts: Any,
    baskets: Baskets,
    selected: np.ndarray,
    config: SynthConfig,
    calibration: Calibration,
    rng: np.random.Generator,
) -> dict[str, Any]:
    start = np.datetime64(config.start, "us")
    member_ids = _member_ids(index[enrolled], p, config.seed)
    local = np.full(len(index), -1)
    local[enrolled] = np.arange(len(enrolled))
    chosen = baskets.member[selected]
    rows = local[chosen]
    transactions = _transactions_table(
        p, member_ids, rows, chosen, index, baskets, selected, start, config, rng
    )
    spend = np.bincount(rows, weights=baskets.amount[selected], minlength=len(enrolled))
    joined = start - (rng.integers(0, 3 * 365 * _US_PER_DAY, len(enrolled)) * _US)
    members = pd.DataFrame(
        {
            "member_id": member_ids,
            "phone": contacts.phone[enrolled],
            "email": contacts.email[enrolled],
            "joined_at": joined,
            "points_balance": np.floor(spend * rng.uniform(0.1, 1.0, len(enrolled))).astype(np.int64),
            **_demographics(len(enrolled), calibration, rng),
        }
    )
    end = start + np.int64(config.days) * _US_PER_DAY * _US
    # A member who gave demographic bands gave the separate sensitive-data consent with them.
    gave_bands = members[["age_band", "income_band"]].notna().any(axis=1).to_numpy()
    consents = generate_consents(
        member_ids, joined.astype("datetime64[ns]"), rng=rng, end=end, sensitive=gave_bands
    )
    return {
        "members": members,
        "transactions": transactions,
        "consents": consents,
        "_ids": (enrolled, member_ids),
    }


def _transactions_table(
    p: int,
    member_ids: np.ndarray,
    rows: np.ndarray,
    chosen: np.ndarray,
    index: np.ndarray,
    baskets: Baskets,
    selected: np.ndarray,
    start: np.datetime64,
    config: SynthConfig,
    rng: np.random.Generator,
) -> pa.Table:
    """Built directly in Arrow: string columns are gathered from small arrays, not formatted per row."""
    home_store = (index[chosen] * 7 + p) % config.stores_per_partner
    stores = np.where(
        baskets.at_home_store[selected],
        home_store,
        rng.integers(0, config.stores_per_partner, len(selected)),
    )
    store_names = pa.array([f"S{p + 1:02d}-{s:03d}" for s in range(config.stores_per_partner)])
    timestamps = start.astype(np.int64) + baskets.offset_us[selected]
    columns = [
        pa.array(member_ids, type=pa.string()).take(pa.array(rows)),
        pa.array(timestamps, type=pa.timestamp("us")),
        pa.array(baskets.amount[selected]),
        store_names.take(pa.array(stores)),
        pa.array(baskets.discount[selected]),
    ]
    return pa.Table.from_arrays(columns, schema=_SCHEMAS["transactions"])


def _member_ids(person_index: np.ndarray, p: int, seed: int) -> np.ndarray:
    # A partner-specific bijection of the person index: unique within the partner, unlinkable across.
    rng = np.random.default_rng([seed, 100 + p])
    a = int(rng.integers(1, 10**8)) * 10 + int(rng.choice([1, 3, 7, 9]))
    numbers = (person_index * a + int(rng.integers(0, 10**9))) % 10**9
    return (f"P{p + 1:02d}-" + pd.Series(numbers).astype(str).str.zfill(9)).to_numpy(dtype=object)


def _demographics(count: int, calibration: Calibration, rng: np.random.Generator) -> dict[str, np.ndarray]:
    known = rng.random(count) < calibration.demographics_share
    columns = {}
    for name, bands in (("age_band", calibration.age_bands), ("income_band", calibration.income_bands)):
        labels = np.array([b for b, _ in bands], dtype=object)
        shares = np.array([s for _, s in bands])
        drawn = labels[rng.choice(len(labels), count, p=shares / shares.sum())]
        column = np.full(count, None, dtype=object)  # None where a member gave no demographics
        column[known] = drawn[known]
        columns[name] = column
    return columns


def _campaigns(
    p: int,
    home_members: np.ndarray,
    behaviour: MemberBehaviour,
    ids: tuple[np.ndarray, np.ndarray],
    start: np.datetime64,
    config: SynthConfig,
    calibration: Calibration,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Exposures of the partner's home members to its campaigns, with the first redemption if any."""
    exposed = home_members[rng.random(len(home_members)) < calibration.campaign_exposed_share]
    per_member = np.minimum(1 + rng.poisson(calibration.campaigns_per_exposed - 1, len(exposed)), _CAMPAIGNS)
    order = np.argsort(rng.random((len(exposed), _CAMPAIGNS)), axis=1)
    chosen = np.arange(_CAMPAIGNS)[None, :] < per_member[:, None]
    member = np.repeat(exposed, per_member)
    campaign = order[chosen]
    spacing = (config.days - _CAMPAIGN_DAYS) * _US_PER_DAY // _CAMPAIGNS
    start_us = campaign.astype(np.int64) * spacing
    # Frequent shoppers redeem more; a member who has lapsed before the campaign never redeems.
    affinity = np.sqrt(behaviour.rate[member])
    chance = (
        calibration.redemption_rate * affinity / max(float(affinity.mean()), 1e-9)
        if len(member)
        else affinity
    )
    redeems = (
        (rng.random(len(member)) < np.minimum(chance, 0.95))
        & (behaviour.active_us[member] > start_us)
        & (behaviour.start_us[member] < start_us + _CAMPAIGN_DAYS * _US_PER_DAY)
    )
    window = _CAMPAIGN_DAYS * _US_PER_DAY
    redeemed_us = start_us + (
        rng.random(len(member)) * np.minimum(window, behaviour.active_us[member] - start_us)
    )
    enrolled, member_ids = ids
    local = np.searchsorted(enrolled, member)
    return pd.DataFrame(
        {
            "member_id": member_ids[local],
            "campaign_id": (f"P{p + 1:02d}-C" + pd.Series(campaign).astype(str).str.zfill(2)).to_numpy(),
            "start_date": start + start_us * _US,
            "end_date": start + (start_us + window) * _US,
            "campaign_type": np.array(["Type A", "Type B", "Type C"], dtype=object)[campaign % 3],
            "redeemed_at": np.where(
                redeems, start + redeemed_us.astype(np.int64) * _US, np.datetime64("NaT")
            ),
        }
    )


def _write_manifest(out: Path, partner_ids: list[str]) -> None:
    lines = []
    for pid in partner_ids:
        lines += ["[[partners]]", f'id = "{pid}"', f'name = "Synthetic {pid}"', 'kind = "store_group"',
                  'region = "CN"', ""]  # fmt: skip
    (out / FEDERATION_FILE).write_text("\n".join(lines), encoding="utf-8")
