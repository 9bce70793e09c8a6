"""A small valid partner folder written as CSV, for tests to break one thing at a time."""

from __future__ import annotations

from pathlib import Path

MEMBERS = """member_id,phone,email,joined_at,points_balance,age_band
M-001,+8613800000001,a@example.com,2016-01-05,120,25-34
M-002,+8613800000002,,2016-02-10T09:30:00,40,
M-003,,c@example.com,2016-03-15 12:00:00+08:00,0,45-54
"""
TRANSACTIONS = """member_id,timestamp,amount,quantity,store_id,category,discount
M-001,2017-01-02T10:00:00,12.50,1,S1,GROCERY,0.5
M-001,2017-01-09T11:00:00,8.00,2,S1,PRODUCE,0
M-002,2017-01-03T18:15:00,30.10,3,S2,GROCERY,1.2
M-003,2017-02-01T08:00:00,0,1,S2,MEAT,0
"""
CONSENTS = """member_id,purpose,granted_at,withdrawn_at,lawful_basis,scope,cross_border
M-001,analytics.churn_model,2016-01-05,,consent,own,false
M-002,marketing.cross_brand_matching,2016-02-10,2017-03-01,consent,federation,false
M-003,analytics.propensity_model,2016-03-15,,consent,own,true
"""
CAMPAIGNS = """member_id,campaign_id,start_date,end_date,campaign_type,redeemed_at
M-001,C1,2017-03-01,2017-04-01,Type A,2017-03-10
M-002,C1,2017-03-01,2017-04-01,Type A,
"""
FILES = {
    "members.csv": MEMBERS,
    "transactions.csv": TRANSACTIONS,
    "consents.csv": CONSENTS,
    "campaigns.csv": CAMPAIGNS,
}


def write_partner(folder: Path, **replacements: str) -> Path:
    """Write the valid folder, with ``replacements`` (file name with '_' for '.': text) applied."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        text = replacements.get(name.replace(".", "_"), text)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def replace_line(text: str, line_number: int, new_line: str) -> str:
    """``text`` with its ``line_number``-th line (1-based, the header is line 1) replaced."""
    lines = text.splitlines()
    lines[line_number - 1] = new_line
    return "\n".join(lines) + "\n"
