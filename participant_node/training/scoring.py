"""Score a partner's members with a published federated model, locally at the node.

The scores stay with the partner that computed them (they are per-member outputs). The member
data passes the node gate first (``participant_node.consent.node_gate``): only members with valid
consent for the model's purpose at the moment of scoring, only rows inside the retention window
ending at ``as_of``, only the columns feature building reads. Features are built at ``as_of`` with
the schema the model was trained with, checked by its fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from models.feature_schema import FeatureSchema, default_feature_schema
from models.features import build_features
from models.networks import make_model
from participant_node.consent import MemberDataUse, admit
from participant_node.data import load_partner
from participant_node.training.errors import TrainingError
from participant_node.training.local_task_data import FEATURE_READS
from policies.purpose import Purpose
from protocol.model_card import CARD_FILE, WEIGHTS_FILE, ModelCard, read_model_card

__all__ = ["PublishedModel", "read_model", "score_partner"]


@dataclass(frozen=True)
class PublishedModel:
    """A published model as a node reads it: its card, the feature schema it was trained with
    (this node's own, matched by fingerprint) and the network with its weights loaded."""

    card: ModelCard
    schema: FeatureSchema
    network: torch.nn.Module


def read_model(model_dir: Path) -> PublishedModel:
    """Read a published model folder (``model_card.json`` and ``model.pt``)."""
    card_path, weights_path = model_dir / CARD_FILE, model_dir / WEIGHTS_FILE
    for path in (card_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(2, "model folder is missing a file", str(path))
    card = read_model_card(model_dir)
    schema = _schema_of(card, card_path)
    model = make_model(card.model, schema.n_features)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return PublishedModel(card=card, schema=schema, network=model)


def _schema_of(card: ModelCard, card_path: Path) -> FeatureSchema:
    """The node's own schema whose fingerprint the card names (with or without category mix)."""
    fingerprint = card.feature_schema.fingerprint
    for category_mix in (False, True):
        schema = default_feature_schema(category_mix=category_mix)
        if schema.fingerprint == fingerprint:
            return schema
    raise TrainingError(f"{card_path}: feature_schema.fingerprint does not match this node's feature schemas")


def score_partner(
    partner_dir: Path, model_dir: Path, *, as_of: datetime, now: datetime | None = None
) -> pd.DataFrame:
    """``member_id, partner_id, score`` for every member of the partner consenting to the model's purpose."""
    published = read_model(model_dir)
    partner = load_partner(partner_dir)
    moment = now or datetime.now(UTC).replace(tzinfo=None)
    use = MemberDataUse(
        purpose=Purpose(published.card.purpose),
        at=moment,
        reads=FEATURE_READS,
        retention_as_of=min(as_of, moment),
    )
    gated = admit(partner, use)
    features = build_features(
        gated.members, gated.transactions, as_of=as_of, schema=published.schema, campaigns=gated.campaigns
    )
    with torch.no_grad():
        scores = torch.sigmoid(published.network(torch.from_numpy(features.to_numpy(copy=True)))).numpy()
    return pd.DataFrame(
        {
            "member_id": features.index.astype(str),
            "partner_id": partner_dir.name,
            "score": scores.astype(float),
        }
    )
