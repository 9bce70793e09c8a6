"""Consent filtering throughput: 10^6 members against 10^6 consent records (issue 5 target ≤ 2 s).

Builds synthetic frames shaped like the data contract (pandas 3 Arrow strings, datetime64[us]),
records withdrawals and erasures in a real node consent store in a temporary partner folder, then
times ``participant_node.consent.consented_members`` end to end (store reads included) several
times and prints one JSON object with every run and the median.

    .venv/bin/python bench/consent_bench.py [--members 1000000] [--records 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from participant_node.consent import ConsentStore, consented_members
from policies.consent_filter import member_tags
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose

AT = datetime(2024, 6, 1)


def synthetic_frames(members: int, records: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Members (with birth dates) and consent records over every purpose and scope."""
    rng = np.random.default_rng(seed)
    ids = pd.Series(np.char.add("m", np.arange(members).astype(str)), dtype="string")
    birth = np.datetime64("1950-01-01", "D") + rng.integers(0, 70 * 365, members).astype("m8[D]")
    member_frame = pd.DataFrame({"member_id": ids, "birth_date": birth.astype("M8[us]")})
    granted = np.datetime64("2021-01-01", "D") + rng.integers(0, 4 * 365, records).astype("m8[D]")
    expires = np.where(rng.random(records) < 0.2, granted + np.timedelta64(400, "D"), np.datetime64("NaT"))
    withdrawn = np.where(rng.random(records) < 0.05, granted + np.timedelta64(90, "D"), np.datetime64("NaT"))
    purposes = np.array([p.value for p in Purpose])
    scopes = np.array(["own", "federation", "careplus;fuelgo", "freshmart-north"])
    consents = pd.DataFrame(
        {
            "member_id": ids.iloc[rng.integers(0, members, records)].reset_index(drop=True),
            "purpose": pd.Series(purposes[rng.integers(0, len(purposes), records)], dtype="string"),
            "granted_at": granted.astype("M8[us]"),
            "expires_at": expires.astype("M8[us]"),
            "withdrawn_at": withdrawn.astype("M8[us]"),
            "lawful_basis": pd.Series(
                np.where(rng.random(records) < 0.99, "consent", "guardian_consent"), dtype="string"
            ),
            "scope": pd.Series(scopes[rng.integers(0, len(scopes), records)], dtype="string"),
            "cross_border": rng.random(records) < 0.3,
        }
    )
    return member_frame, consents


def prepare_store(partner: Path, members: pd.DataFrame, withdrawals: int, erasures: int) -> None:
    """Record withdrawals and erasure requests in the partner's real consent store."""
    store = ConsentStore.at_partner(partner)
    withdrawn = members["member_id"].iloc[:withdrawals].tolist()
    store.withdraw(withdrawn, [Purpose.CHURN_MODEL], at=datetime(2024, 1, 1))
    erased = members["member_id"].iloc[withdrawals : withdrawals + erasures]
    for tag in member_tags(erased, store.tag_key):
        store.open_erasure(int(tag), received_at=datetime(2024, 2, 1), jurisdictions=frozenset(Jurisdiction))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--withdrawals", type=int, default=1_000)
    parser.add_argument("--erasures", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    members, consents = synthetic_frames(args.members, args.records, args.seed)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        partner = Path(tmp)
        prepare_store(partner, members, args.withdrawals, args.erasures)
        for label, recipient in (("own_use", None), ("recipient_fuelgo", "fuelgo")):
            seconds, selected = [], 0
            for _ in range(args.runs):
                started = time.perf_counter()
                selection = consented_members(
                    partner, members, consents, purpose=Purpose.CHURN_MODEL, at=AT, recipient=recipient
                )
                seconds.append(time.perf_counter() - started)
                selected = len(selection.member_ids)
            results[label] = {
                "seconds": [round(s, 3) for s in seconds],
                "median_seconds": round(statistics.median(seconds), 3),
                "selected": selected,
                "excluded_by": selection.excluded_by,
            }
    print(
        json.dumps(
            {
                "benchmark": "consent_filter",
                "members": args.members,
                "records": args.records,
                "store_withdrawals": args.withdrawals,
                "store_erasures": args.erasures,
                "target_seconds": 2.0,
                "runs": args.runs,
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
