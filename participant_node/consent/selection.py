"""``consented_members``: the node's consent gate before PSI and before every training round.

It combines the consents file a partner dropped into its folder with the node's consent store
(withdrawals, later grants and erasures recorded by ``loyalfed consent …`` after the file was
written) and applies the rules of ``policies.consent_filter``. Member-level consent is known only
here, at the node (issue 5 item 4); only counts and the snapshot hash leave it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from participant_node.consent.store import ConsentStore, store_path
from policies.consent_filter import ConsentQuery, ConsentSelection, select_consented
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose

__all__ = ["consented_members"]


def consented_members(
    partner_dir: Path,
    members: pd.DataFrame,
    consents: pd.DataFrame,
    *,
    purpose: Purpose,
    at: datetime,
    recipient: str | None = None,
    cross_border: bool = False,
    sensitive: bool = False,
    jurisdictions: frozenset[Jurisdiction] = frozenset({Jurisdiction.CN}),
    granted_since: datetime | None = None,
) -> ConsentSelection:
    """Select the members of ``members`` that may be used for ``purpose`` at ``at``.

    Parameters
    ----------
    partner_dir
        The partner folder; its consent store (``<partner_dir>/.loyalfed/consent.sqlite``) is read
        when it exists and never created here.
    members, consents
        The partner's members and consents frames as loaded by ``participant_node.data``.
    purpose, at
        What the data is used for, and when.
    recipient
        The partner the data or its derivatives go to; None for the partner's own use (scope
        ``"own"`` covers only that, ``"federation"`` any partner, ``"a;b"`` the partners named).
    cross_border, sensitive
        The use needs the member's separate cross-border / sensitive-data consent (PIPL 39 / 29).
    jurisdictions
        Laws the node is under (decides the guardian-consent age: 14 under PIPL, 16 under GDPR).
    granted_since
        The policy's ``notice_effective_at``: consents given before the current notice do not count.

    Returns
    -------
    ConsentSelection
        ``member_ids`` (a pandas Index, node-local), ``excluded`` and ``excluded_by`` counts, and a
        ``snapshot_hash`` for the audit log.
    """
    query = ConsentQuery(
        purpose=purpose,
        at=at,
        recipient=recipient,
        cross_border=cross_border,
        sensitive=sensitive,
        jurisdictions=jurisdictions,
        granted_since=granted_since,
    )
    path = store_path(partner_dir)
    if not path.exists():
        return select_consented(members, consents, query)
    store = ConsentStore(path)
    try:
        later_grants = store.grants()
        if len(later_grants):
            consents = pd.concat([consents, later_grants], ignore_index=True)
        return select_consented(
            members,
            consents,
            query,
            withdrawals=store.withdrawals(),
            erased_tags=store.erased_tags(),
            tag_key=store.tag_key,
        )
    finally:
        store.close()
