"""Partner folders for the PSI command tests: PSI matches a partner's consented members only."""

from __future__ import annotations

from pathlib import Path

# The consents' and transactions' moment, and the --at the tests check consent at.
AT = "2024-06-01"


def write_matching_partner(
    folder: Path, members: list[tuple[str, str, str]], *, value_column: str = ""
) -> Path:
    """A partner folder of ``(member_id, phone, value)`` rows, active in 2024, whose members all
    consented to cross-brand matching with the whole federation except ids ending in "-nc"."""
    folder.mkdir(parents=True)
    header = "member_id,phone,joined_at" + (f",{value_column}" if value_column else "")
    rows = [f"{m},{phone},2020-01-01" + (f",{v}" if value_column else "") for m, phone, v in members]
    (folder / "members.csv").write_text("\n".join([header, *rows]) + "\n")
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount\n" + "".join(f"{m},2024-05-01T10:00:00,1.00\n" for m, _, _ in members)
    )
    consented = [m for m, _, _ in members if not m.endswith("-nc")]
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at,scope\n"
        + "".join(f"{m},marketing.cross_brand_matching,2024-01-01,federation\n" for m in consented)
    )
    return folder
