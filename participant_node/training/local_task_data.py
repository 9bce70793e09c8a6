"""What a node trains and evaluates on: its consented members' features, split train / held-out.

Consent is applied first, on the raw frames: rows of members without valid consent for the job's
purpose at the moment of use are dropped before feature building ever sees them. The selection is
recomputed for every round (a withdrawal takes effect at the next step, PIPL Art. 15, GDPR
Art. 7(3)); the loaded files and the built features are cached by the data fingerprint and the
consent snapshot hash, so an unchanged selection costs no rebuild.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from models.feature_schema import FeatureSchema
from models.task_dataset import TaskDataset, build_task_dataset, heldout_mask
from participant_node.consent import ConsentSelection, consented_members
from participant_node.data import PartnerData, fingerprint_partner, load_partner
from participant_node.training.errors import TrainingError
from participant_node.training.training_spec import TrainingSpec

__all__ = ["ConsentSelector", "LocalTaskData", "consent_selection", "load_local_task_data"]

# (partner data, purpose, moment of use) -> the members that may be used.
ConsentSelector = Callable[[PartnerData, TrainingSpec, datetime], ConsentSelection]


@dataclass(frozen=True)
class LocalTaskData:
    """One node's consented, labelled examples for a task, split by the shared held-out rule."""

    partner_id: str
    data_fingerprint: str
    consent_snapshot_hash: str
    members_excluded_by_consent: int
    train: TaskDataset
    heldout: TaskDataset

    @property
    def members_used(self) -> int:
        return len(self.train) + len(self.heldout)


def consent_selection(partner: PartnerData, spec: TrainingSpec, at: datetime) -> ConsentSelection:
    """Members with valid consent for the job's purpose at ``at`` (the partner's own use of its data),
    honouring the withdrawals and erasures recorded in the node's consent store."""
    return consented_members(partner.path, partner.members, partner.consents, purpose=spec.purpose, at=at)


_CACHE_SIZE = 8
_lock = threading.Lock()
_partner_cache: dict[tuple[Path, str], PartnerData] = {}
_dataset_cache: dict[tuple[object, ...], LocalTaskData] = {}


def load_local_task_data(
    partner_dir: Path,
    spec: TrainingSpec,
    *,
    at: datetime,
    schema: FeatureSchema | None = None,
    select: ConsentSelector = consent_selection,
) -> LocalTaskData:
    """Load, consent-filter, featurise and split a partner's data for ``spec`` at moment ``at``.

    When the job carries a standardisation (``spec.standardisation``), both splits come back
    standardised with it; without one they are on the schema's public [0, 1] scale.
    """
    data = _load_publicly_scaled(partner_dir, spec, at=at, schema=schema, select=select)
    standardisation = spec.standardisation
    if standardisation is None:
        return data
    return replace(
        data,
        train=replace(data.train, X=standardisation.apply(data.train.X)),
        heldout=replace(data.heldout, X=standardisation.apply(data.heldout.X)),
    )


def _load_publicly_scaled(
    partner_dir: Path,
    spec: TrainingSpec,
    *,
    at: datetime,
    schema: FeatureSchema | None,
    select: ConsentSelector,
) -> LocalTaskData:
    schema = schema or spec.schema
    fingerprint = fingerprint_partner(partner_dir)
    with _lock:
        partner = _partner_cache.get((partner_dir, fingerprint))
    if partner is None:
        partner = load_partner(partner_dir)
        with _lock:
            _remember(_partner_cache, (partner_dir, fingerprint), partner)
    selection = select(partner, spec, at)
    key = (
        partner_dir,
        fingerprint,
        selection.snapshot_hash,
        spec.task,
        spec.as_of,
        spec.horizon_days,
        schema.fingerprint,
    )
    with _lock:
        cached = _dataset_cache.get(key)
    if cached is not None:
        return cached
    data = _build(partner, selection, spec, schema, fingerprint)
    with _lock:
        _remember(_dataset_cache, key, data)
    return data


def _remember(cache: dict, key: object, value: object) -> None:
    # One simulation worker serves several virtual nodes in turn: keep a few, oldest out first.
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.pop(next(iter(cache)))


def _build(
    partner: PartnerData,
    selection: ConsentSelection,
    spec: TrainingSpec,
    schema: FeatureSchema,
    fingerprint: str,
) -> LocalTaskData:
    keep = selection.member_ids
    members = partner.members[partner.members["member_id"].isin(keep)]
    transactions = partner.transactions[partner.transactions["member_id"].isin(keep)]
    campaigns = partner.campaigns
    if campaigns is not None:
        campaigns = campaigns[campaigns["member_id"].isin(keep)]
    dataset = build_task_dataset(
        members,
        transactions,
        campaigns,
        task=spec.task,
        as_of=spec.as_of,
        horizon_days=spec.horizon_days,
        schema=schema,
    )
    if len(dataset) < 2 * spec.k_min:
        raise TrainingError(
            f"partner {partner.path.name}: only {len(dataset)} consented, labelled members for {spec.task}; "
            f"at least {2 * spec.k_min} are needed to train and evaluate over k={spec.k_min}"
        )
    held = heldout_mask(pd.Index(dataset.member_ids))
    return LocalTaskData(
        partner_id=partner.path.name,
        data_fingerprint=fingerprint,
        consent_snapshot_hash=selection.snapshot_hash,
        members_excluded_by_consent=selection.excluded,
        train=dataset.subset(~held),
        heldout=dataset.subset(held),
    )
