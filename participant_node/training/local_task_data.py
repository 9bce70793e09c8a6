"""What a node trains and evaluates on: its consented members' features, split train / held-out.

The node gate (``participant_node.consent.node_gate``) is applied first, on the raw frames: only
members with valid consent for the job's purpose at the moment of use, only rows inside the
retention window, only the columns feature building and labelling read (``TRAINING_READS``), and
the demographic columns of fairness evaluation only for members with the separate sensitive-data
consent. The selection is recomputed for every round (a withdrawal takes effect at the next step,
PIPL Art. 15, GDPR Art. 7(3)); the loaded files and the built features are cached by the data
fingerprint, the consent snapshot hash and the policy, so an unchanged selection costs no rebuild.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from models.feature_schema import FeatureSchema
from models.task_dataset import FAIRNESS_COLUMNS, TaskDataset, build_task_dataset, heldout_mask
from participant_node.consent import GatedData, MemberDataUse
from participant_node.consent.node_gate import apply_selection, select_members
from participant_node.data import PartnerData, fingerprint_partner, load_partner
from participant_node.training.errors import TrainingError
from policies.consent_filter import ConsentSelection
from policies.policy import DataUsePolicy
from protocol import JobSpec

__all__ = ["FEATURE_READS", "TRAINING_READS", "LocalTaskData", "load_local_task_data", "training_use"]

# The columns feature building reads (models.features; optional ones only when present).
FEATURE_READS: Mapping[str, tuple[str, ...]] = {
    "members": ("member_id", "joined_at"),
    "transactions": (
        "member_id",
        "timestamp",
        "amount",
        "quantity",
        "basket_id",
        "discount",
        "store_id",
        "category",
    ),
    "campaigns": ("member_id", "campaign_id", "start_date", "end_date", "redeemed_at"),
}
# Training also labels (models.labels reads the same transactions and campaigns columns).
TRAINING_READS = FEATURE_READS
# Fairness evaluation only: demographic group columns (models.task_dataset.FAIRNESS_COLUMNS).
_FAIRNESS_READS: Mapping[str, tuple[str, ...]] = {"members": ("member_id", *FAIRNESS_COLUMNS)}


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


def training_use(
    spec: JobSpec, at: datetime, *, policy: DataUsePolicy | None = None, node_region: str | None = None
) -> MemberDataUse:
    """The node gate's view of a training job: the node's own use of its data for the job's purpose.

    Retention is measured at the end of the period the job reads (its labelling window), never
    later than the moment of use: a job over history sees the window that ended then.
    """
    return MemberDataUse(
        purpose=spec.purpose,
        at=at,
        reads=TRAINING_READS,
        policy=policy,
        node_region=node_region,
        retention_as_of=min(spec.as_of + timedelta(days=spec.horizon_days), at),
    )


_CACHE_SIZE = 8
_lock = threading.Lock()
_partner_cache: dict[tuple[Path, str], PartnerData] = {}
_dataset_cache: dict[tuple[object, ...], LocalTaskData] = {}


def load_local_task_data(
    partner_dir: Path,
    spec: JobSpec,
    *,
    at: datetime,
    schema: FeatureSchema | None = None,
    policy: DataUsePolicy | None = None,
    node_region: str | None = None,
) -> LocalTaskData:
    """Load, gate, featurise and split a partner's data for ``spec`` at moment ``at``.

    ``policy`` is the approved policy the job runs under when the node holds it (its retention,
    columns and cross-border rules then apply too). When the job carries a standardisation
    (``spec.standardisation``), both splits come back standardised with it; without one they are
    on the schema's public [0, 1] scale.
    """
    use = training_use(spec, at, policy=policy, node_region=node_region)
    data = _load_publicly_scaled(partner_dir, spec, use, schema or spec.schema)
    standardisation = spec.standardisation
    if standardisation is None:
        return data
    return replace(
        data,
        train=replace(data.train, X=standardisation.apply(data.train.X)),
        heldout=replace(data.heldout, X=standardisation.apply(data.heldout.X)),
    )


def _members_key(selection: ConsentSelection) -> str:
    """sha256 of the selected member ids in order (node-local: a cache key, never sent or logged)."""
    ids = pd.util.hash_pandas_object(pd.Series(selection.member_ids.sort_values()), index=False)
    return hashlib.sha256(ids.to_numpy().tobytes()).hexdigest()


def _load_publicly_scaled(
    partner_dir: Path, spec: JobSpec, use: MemberDataUse, schema: FeatureSchema
) -> LocalTaskData:
    fingerprint = fingerprint_partner(partner_dir)
    with _lock:
        partner = _partner_cache.get((partner_dir, fingerprint))
    if partner is None:
        partner = load_partner(partner_dir)
        with _lock:
            _remember(_partner_cache, (partner_dir, fingerprint), partner)
    selection, crosses = select_members(partner, use)
    fairness = replace(use, reads=_FAIRNESS_READS, fairness=True)
    fair_selection, _ = select_members(partner, fairness)
    # The features depend on which members were selected, not on when: the snapshot hash names the
    # moment too, so it would miss on every message. Keyed on the selected members themselves; the
    # cached data is returned with this moment's snapshot hash and exclusion count.
    key = (
        partner_dir,
        fingerprint,
        _members_key(selection),
        _members_key(fair_selection),
        crosses,
        use.policy.content_hash() if use.policy is not None else None,
        use.retention_as_of,
        spec.task,
        spec.as_of,
        spec.horizon_days,
        schema.fingerprint,
    )
    with _lock:
        cached = _dataset_cache.get(key)
    if cached is not None:
        return replace(
            cached,
            consent_snapshot_hash=selection.snapshot_hash,
            members_excluded_by_consent=selection.excluded,
        )
    gated = apply_selection(partner, use, selection, crosses)
    # Demographic columns for fairness evaluation only, of members with the separate sensitive-data
    # consent (PIPL Art. 29 / GDPR Art. 9) and, under a policy, only its sensitive columns.
    groups = apply_selection(partner, fairness, fair_selection, crosses).members
    data = _build(partner, gated, groups, spec, schema, fingerprint)
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
    gated: GatedData,
    groups: pd.DataFrame,
    spec: JobSpec,
    schema: FeatureSchema,
    fingerprint: str,
) -> LocalTaskData:
    members = gated.members
    demographic = [c for c in groups.columns if c != "member_id"]
    if demographic:
        members = members.merge(groups, on="member_id", how="left")
    dataset = build_task_dataset(
        members,
        gated.transactions,
        gated.campaigns,
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
        consent_snapshot_hash=gated.selection.snapshot_hash,
        members_excluded_by_consent=gated.selection.excluded,
        train=dataset.subset(~held),
        heldout=dataset.subset(held),
    )
