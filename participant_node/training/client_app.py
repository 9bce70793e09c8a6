"""The node's Flower ClientApp (flwr 1.41 Message API): describe, train with DP-SGD, evaluate.

What leaves the node, and under which mechanism:

* ``describe`` (query): the partner id and the data fingerprint (a hash of the files, no content);
* ``feature_moments`` (query): count, sums and sums of squares of the training members' publicly
  scaled features (an aggregate over ≥ k members, refused below; not DP, see
  ``models.feature_standardisation``), from which the coordinator pools the job's standardisation;
* ``train``: the model weights after DP-SGD (member-level (ε, δ) from the node's own accountant),
  the training-member count (an aggregate over ≥ 2k members), and the accountant's figures;
* ``evaluate``: score histograms with every bin over ≥ k members, and the mean Brier score, the
  exact ROC-AUC and the held-out count (aggregates over ≥ k members).

Error messages that could quote member data are replaced by their type name (``redact_errors``);
the node's own typed errors are written to be safe and pass through.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from models.feature_standardisation import FeatureMoments
from models.metrics import roc_auc
from models.networks import make_model
from participant_node.errors import NodeError
from participant_node.training.dp_sgd import DpSgdSettings, poisson_sample_rate, train_dp_sgd
from participant_node.training.errors import TrainingError
from participant_node.training.local_task_data import LocalTaskData, load_local_task_data
from participant_node.training.privacy_accountant import (
    NodePrivacyAccountant,
    calibrate_noise_multiplier,
    effective_delta,
)
from participant_node.training.score_histogram import binned_scores
from participant_node.training.training_spec import TrainingSpec, parse_training_spec

__all__ = ["FEATURE_MOMENTS_ACTION", "MOMENTS_RECORD", "NODE_RECORD", "make_client_app", "redact_errors"]

NODE_RECORD = "node"  # ConfigRecord key of a reply: partner id, fingerprints
MOMENTS_RECORD = "moments"  # MetricRecord key of a feature_moments reply: count, sums, sums-of-squares
FEATURE_MOMENTS_ACTION = "feature_moments"  # the query action: message type "query.feature_moments"
_GROUP_PREFIX = "group:"  # evaluation keys "group:<attribute>=<group>:edges|pos|neg"
_log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def redact_errors(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: let the node's typed errors through, replace any other error by its type name."""
    try:
        return call_next(msg, context)
    except NodeError:
        raise
    except Exception as err:  # process boundary of the node: log locally, send only the type
        _log.exception("node failed while handling %s", msg.metadata.message_type)
        raise TrainingError(
            f"node failed while handling {msg.metadata.message_type}: {type(err).__name__}"
        ) from err


class _Node:
    """Where a node's data and state live, resolved from the Flower context."""

    def __init__(self, context: Context, partner_dirs: Sequence[Path] | None) -> None:
        config = context.node_config
        if "partner-dir" in config:
            self.partner_dir = Path(str(config["partner-dir"]))
        elif partner_dirs is not None:
            self.partner_dir = Path(partner_dirs[int(config["partition-id"])])
        else:
            raise TrainingError("node is not configured: set node_config partner-dir=<partner folder>")
        self.state_dir = Path(str(config.get("state-dir", self.partner_dir / ".loyalfed")))
        self.partner_id = str(config.get("partner-id", self.partner_dir.name))

    @property
    def accountant(self) -> NodePrivacyAccountant:
        return NodePrivacyAccountant(self.state_dir / "privacy_accountant.json")

    def record_usage(self, job_id: str, server_round: int, member_ids: np.ndarray) -> None:
        """Keep, at the node only, which members each round trained on (answers 'was my data used?')."""
        path = self.state_dir / "usage" / f"{job_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"round": server_round, "member_ids": [str(m) for m in member_ids]}) + "\n")


def make_client_app(
    partner_dirs: Sequence[Path] | None = None, *, clock: Clock | None = None, mods: Sequence[Mod] = ()
) -> ClientApp:
    """Build the ClientApp.

    Parameters
    ----------
    partner_dirs
        Simulation only: partner folder of each virtual node, by ``partition-id``. In deployment
        every SuperNode names its folder with ``--node-config "partner-dir='...'"``.
    clock
        The moment of use for consent checks (default: now, UTC).
    mods
        Extra Flower mods, run inside ``redact_errors`` (e.g. secure aggregation).
    """
    now = clock or (lambda: datetime.now(UTC).replace(tzinfo=None))
    app = ClientApp(mods=[redact_errors, *mods])

    @app.query()
    def describe(msg: Message, context: Context) -> Message:
        node = _Node(context, partner_dirs)
        from participant_node.data import fingerprint_partner

        record = ConfigRecord(
            {"partner-id": node.partner_id, "data-fingerprint": fingerprint_partner(node.partner_dir)}
        )
        return Message(RecordDict({NODE_RECORD: record}), reply_to=msg)

    @app.query(FEATURE_MOMENTS_ACTION)
    def feature_moments(msg: Message, context: Context) -> Message:
        node = _Node(context, partner_dirs)
        spec = parse_training_spec(msg.content["config"])
        if spec.standardisation is not None:
            raise TrainingError("feature moments are taken on the public scaling: send no standardisation")
        data = load_local_task_data(node.partner_dir, spec, at=now())
        if len(data.train) < spec.k_min:
            raise TrainingError(
                f"only {len(data.train)} training members; feature moments need at least k={spec.k_min}"
            )
        moments = FeatureMoments.of(data.train.X)
        record = MetricRecord(
            {
                "count": moments.count,
                "sums": list(moments.sums),
                "sums-of-squares": list(moments.sums_of_squares),
            }
        )
        return Message(
            RecordDict({MOMENTS_RECORD: record, NODE_RECORD: _node_record(node, data)}), reply_to=msg
        )

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        node = _Node(context, partner_dirs)
        config = msg.content["config"]
        spec = parse_training_spec(config)
        data = load_local_task_data(node.partner_dir, spec, at=now())
        model = _model_with(msg.content["arrays"], spec, data)
        metrics = _train_round(node, spec, data, model, float(config.get("proximal-mu", 0.0)))
        node.record_usage(spec.job_id, int(config.get("server-round", 0)), data.train.member_ids)
        content = RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "metrics": MetricRecord(metrics),
                NODE_RECORD: _node_record(node, data),
            }
        )
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        node = _Node(context, partner_dirs)
        spec = parse_training_spec(msg.content["config"])
        data = load_local_task_data(node.partner_dir, spec, at=now())
        model = _model_with(msg.content["arrays"], spec, data)
        metrics = _evaluate(model, data, spec.k_min)
        content = RecordDict({"metrics": MetricRecord(metrics), NODE_RECORD: _node_record(node, data)})
        return Message(content, reply_to=msg)

    return app


def _model_with(arrays: ArrayRecord, spec: TrainingSpec, data: LocalTaskData) -> torch.nn.Module:
    model = make_model(spec.model, data.train.X.shape[1])
    model.load_state_dict(arrays.to_torch_state_dict())
    return model


def _train_round(
    node: _Node, spec: TrainingSpec, data: LocalTaskData, model: torch.nn.Module, proximal_mu: float
) -> dict[str, float | int]:
    """Charge the node's accountant for this round's steps (refusing an overshoot), then train."""
    n = len(data.train)
    delta = effective_delta(spec.delta, n)
    rate = poisson_sample_rate(n, spec.batch_size)
    sigma = calibrate_noise_multiplier(
        epsilon=spec.epsilon, delta=delta, sample_rate=rate, steps=spec.total_steps
    )
    accountant = node.accountant
    previous = accountant.entries(dataset=node.partner_id, purpose=spec.purpose, job_id=spec.job_id)
    # Keep the job's noise at least as large as in earlier rounds (the member count may shrink).
    sigma = max([sigma, *(e.noise_multiplier for e in previous)])
    epsilon = accountant.charge(
        dataset=node.partner_id,
        purpose=spec.purpose,
        job_id=spec.job_id,
        noise_multiplier=sigma,
        sample_rate=rate,
        steps=spec.local_steps,
        delta=delta,
        epsilon_cap=spec.epsilon,
    )
    settings = DpSgdSettings(
        noise_multiplier=sigma,
        max_grad_norm=spec.max_grad_norm,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        steps=spec.local_steps,
        proximal_mu=proximal_mu,
    )
    cpu_started = time.process_time()
    stats = train_dp_sgd(model, data.train.X, data.train.y, settings)
    return {
        "cpu-seconds": time.process_time() - cpu_started,
        "num-examples": n,
        "epsilon": epsilon,
        "delta": delta,
        "noise-multiplier": sigma,
        "sample-rate": stats.sample_rate,
        "steps": sum(e.steps for e in previous) + stats.steps,
        "train-loss": stats.mean_loss,
    }


def _evaluate(
    model: torch.nn.Module, data: LocalTaskData, k: int
) -> dict[str, float | int | list[float] | list[int]]:
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(data.heldout.X))).numpy().astype(np.float64)
    labels = data.heldout.y.astype(np.float64)
    if len(labels) < k:
        raise TrainingError(f"only {len(labels)} held-out members; evaluation needs at least k={k}")
    histogram = binned_scores(scores, labels, k=k)
    metrics: dict[str, float | int | list[float] | list[int]] = {
        "num-examples": len(labels),
        "brier": float(np.mean((scores - labels) ** 2)),
        "hist-edges": list(histogram.edges),
        "hist-pos": list(histogram.positives),
        "hist-neg": list(histogram.negatives),
    }
    # Fairness: the same k-binned histogram per demographic group with at least k members; smaller
    # groups (and members who did not state the attribute) are never reported.
    if 0 < labels.sum() < len(labels):  # the exact AUC over all (>= k) held-out members
        metrics["auc"] = float(roc_auc(labels, scores))
    for attribute, values in data.heldout.groups.items():
        for group in sorted(set(values) - {"unknown"}):
            member = values == group
            if member.sum() >= k:
                group_hist = binned_scores(scores[member], labels[member], k=k)
                prefix = f"{_GROUP_PREFIX}{attribute}={group}:"
                metrics[prefix + "edges"] = list(group_hist.edges)
                metrics[prefix + "pos"] = list(group_hist.positives)
                metrics[prefix + "neg"] = list(group_hist.negatives)
    return metrics


def _node_record(node: _Node, data: LocalTaskData) -> ConfigRecord:
    return ConfigRecord(
        {
            "partner-id": node.partner_id,
            "data-fingerprint": data.data_fingerprint,
            "consent-snapshot-hash": data.consent_snapshot_hash,
            "members-used": data.members_used,
            "members-excluded-by-consent": data.members_excluded_by_consent,
        }
    )
