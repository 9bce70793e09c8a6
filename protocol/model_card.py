"""The model card: a typed, versioned record of what a federated job trained and what it cost.

Written and read only through this module (``write_model_card``/``read_model_card``): the
coordinator builds it, the registry stores it, the CLI and the demo report read it. A model folder
holds ``model.pt`` (the global weights as a torch state dict) and ``model_card.json``; the card
records the weights' SHA-256, the policy the job ran under, the ε every node's accountant spent,
the pooled evaluation and which mechanism covers every figure that left a node.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import ModelCardError

__all__ = [
    "CARD_FILE",
    "CARD_VERSION",
    "WEIGHTS_FILE",
    "CardCalibration",
    "CardDpSgd",
    "CardFairnessGap",
    "CardFeatureSchema",
    "CardMetrics",
    "CardNode",
    "CardRound",
    "CardStandardisation",
    "ModelCard",
    "fairness_alarms",
    "read_model_card",
    "write_model_card",
]

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.pt"
CARD_VERSION: Literal[2] = 2  # 2: typed card with the policy id, version and hash


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CardDpSgd(_Frozen):
    expected_batch_size: int
    learning_rate: float
    max_grad_norm: float


class CardFeatureSchema(_Frozen):
    fingerprint: str
    features: list[str]


class CardStandardisation(_Frozen):
    mean: list[float]
    scale: list[float]
    folded_into_weights: bool = True


class CardNode(_Frozen):
    """One node's figures: counts, and the ε its own accountant charged to the job."""

    partner_id: str
    members_used: int
    members_excluded_by_consent: int
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    consent_snapshot_hash: str


class CardFairnessGap(_Frozen):
    auc_by_group: dict[str, float]
    positive_rate_by_group: dict[str, float]
    auc_gap: float | None  # None: not computable, with the reason in not_computable (never a 0 gap)
    positive_rate_gap: float | None
    warning: bool  # the 15-point alarm: a gap above 15 points, clear of the groups' noise
    members_by_group: dict[str, int] = {}
    too_small_to_report: list[str] = []  # groups under k held-out members in the federation
    too_small_for_auc: list[str] = []  # groups with too few members of one class for an AUC
    auc_gap_standard_error: float = 0.0
    positive_rate_gap_standard_error: float = 0.0
    gap_within_noise: bool = False  # a gap above 15 points the groups' sizes cannot tell from chance
    not_computable: list[str] = []  # why a gap is None, in plain words (models.group_fairness)


class CardCalibration(_Frozen):
    """Ten equal-width score bins; a bin under k held-out members is withheld (None)."""

    mean_predicted: list[float | None]
    fraction_positive: list[float | None]
    members: list[int | None]


class CardRocCurve(_Frozen):
    fpr: list[float]
    tpr: list[float]


class CardMetrics(_Frozen):
    auc: float
    pr_auc: float
    brier: float
    base_rate: float
    node_auc: dict[str, float]
    # Per attribute, or {"not_reported": why} when no group reached k held-out members at a node.
    fairness_gaps: dict[str, CardFairnessGap] | dict[Literal["not_reported"], str]
    evaluation: str
    roc_curve: CardRocCurve
    calibration: CardCalibration | None = None
    heldout_noise_sigma: float = 0.0  # DP noise on each summed held-out count (0: an exact sum)


class CardRound(_Frozen):
    round: int
    nodes_ok: int
    nodes_failed: int
    seconds: float
    train_loss: float
    validation_auc: float | None = None


class ModelCard(_Frozen):
    """The card of one published model (see the module docstring)."""

    card_version: Literal[2] = CARD_VERSION
    job_id: str
    task: str
    purpose: str
    model: str
    strategy: str
    proximal_mu: float
    secure_aggregation: bool
    secure_aggregation_protocol: dict[str, Any] | None = None
    policy_id: str | None = None
    policy_version: int | None = None
    policy_hash: str | None = None
    rounds: int
    rounds_planned: int
    stopped_early: bool
    local_steps_per_round: int
    dp_sgd: CardDpSgd
    server_momentum: float
    published_model: str
    target_epsilon: float
    delta: float
    accountant: str
    epsilon_worst_case_member: float
    epsilon_composition_across_nodes: str
    k_min: int
    as_of: date
    horizon_days: int
    feature_schema: CardFeatureSchema
    feature_standardisation: CardStandardisation | None = None
    nodes: list[CardNode]
    metrics: CardMetrics | None = None
    round_history: list[CardRound] = Field(default_factory=list)
    mechanisms: dict[str, str]
    data_fingerprints: dict[str, str]
    lineage_id: str
    created_at: datetime
    heldout_members: int
    weights_sha256: str | None = None

    def node(self, partner_id: str) -> CardNode:
        """The figures of one node; ``KeyError`` if it did not take part."""
        for node in self.nodes:
            if node.partner_id == partner_id:
                return node
        raise KeyError(partner_id)


def write_model_card(model_dir: Path, card: ModelCard) -> Path:
    """Write ``card`` as ``model_dir/model_card.json``; return its path."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CARD_FILE
    path.write_text(card.model_dump_json(indent=2), encoding="utf-8")
    return path


def parse_model_card(text: str | bytes, *, source: str = "model card") -> ModelCard:
    """Parse a card's JSON; raise ``ModelCardError`` naming the source and the first bad field."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelCardError(f"{source}: not JSON ({err.msg if hasattr(err, 'msg') else err})") from err
    if not isinstance(raw, dict):
        raise ModelCardError(f"{source}: expected a JSON object")
    version = raw.get("card_version")
    if version != CARD_VERSION:
        raise ModelCardError(
            f"{source}: card_version {version!r} is not supported (this loyalfed reads version "
            f"{CARD_VERSION}); publish the model again"
        )
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "card"
        raise ModelCardError(f"{source}: {where}: {first['msg']}") from err


def read_model_card(model_dir: Path) -> ModelCard:
    """The card of the model in ``model_dir``; ``ModelCardError`` if missing or invalid."""
    path = model_dir / CARD_FILE
    try:
        text = path.read_bytes()
    except OSError as err:
        raise ModelCardError(f"{path}: no model card ({err.strerror})") from err
    return parse_model_card(text, source=str(path))


def fairness_alarms(card: Mapping[str, Any]) -> list[dict[str, str | float | int]]:
    """One audit-event ``details`` record per attribute whose gap raised the 15-point alarm.

    Reads a card as JSON (``ModelCard.model_dump(mode="json")``); numbers and the attribute name
    only (group labels stay on the card), with how many groups were too small to report.
    """
    metrics = card.get("metrics") or {}
    gaps = metrics.get("fairness_gaps") or {}
    out: list[dict[str, str | float | int]] = []
    for attribute, gap in sorted(gaps.items()):
        if not isinstance(gap, Mapping) or not gap.get("warning"):
            continue
        out.append(
            {
                "attribute": attribute,
                "auc_gap": _gap_figure(gap.get("auc_gap")),
                "positive_rate_gap": _gap_figure(gap.get("positive_rate_gap")),
                "groups_reported": len(gap.get("positive_rate_by_group", {})),
                "groups_too_small": len(gap.get("too_small_to_report", [])),
            }
        )
    return out


def _gap_figure(value: object) -> float | str:
    # A token, not prose: audit event details hold numbers and short snake_case tokens.
    return float(value) if isinstance(value, int | float) else "not_computable"
