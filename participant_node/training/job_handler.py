"""The node's side of a job, pure of HTTP and of Flower's runtime: ``handle(message, node) -> reply``.

The simulation's ClientApp and the node service's warm process both call ``handle``. What leaves
the node, and under which mechanism:

* ``query.describe``: the partner id and the data fingerprint (a hash of the files, no content);
* ``query.feature_moments``: count, sums and sums of squares of the training members' publicly
  scaled features (an aggregate over ≥ k members, refused below; not DP, see
  ``models.feature_standardisation``), from which the coordinator pools the job's standardisation,
  with the ``query.group_labels`` answer below beside it (one message fewer per job);
* ``train``: the model weights after DP-SGD (member-level (ε, δ) from the node's own accountant,
  charged *before* the update is computed, so a lost reply is still accounted), the training-member
  count (an aggregate over ≥ 2k members), and the accountant's figures;
* ``query.group_labels``: the demographic group labels among the held-out members (no counts) and
  the held-out count rounded to two significant figures, from which the coordinator fixes the
  public layout of the evaluation vectors;
* ``evaluate``: the held-out members' score-histogram vector on that layout, released under DP
  noise, or masked under SecAgg+ when a ``train`` message asks for the secure sum
  (``participant_node.training.heldout_release``); and the mean Brier score, the exact ROC-AUC and
  the held-out count (aggregates over ≥ k members);
* ``query.privacy_spent``: what the node's accountant charged to the job, the larger of its
  training and held-out members' ε (disjoint sets: parallel composition); the coordinator's ledger
  settles from it, whatever replies were lost on the way.

A job the node will not serve (a spec it cannot accept, a step its accountant refuses) gets a typed
``protocol.Refusal`` reply with the node's own safe reason; other failures raise ``NodeError``
subclasses, whose messages are safe to send (see ``client_app.redact_errors``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.app.message_type import MessageType

from models.dp_schedule import intercept_input, rounded_member_count
from models.feature_standardisation import FeatureMoments
from models.networks import make_model
from participant_node.training.dp_sgd import DpSgdSettings, poisson_sample_rate, train_dp_sgd
from participant_node.training.errors import PrivacyBudgetError, TrainingError
from participant_node.training.heldout_release import release_heldout_evaluation
from participant_node.training.job_spend import job_spend
from participant_node.training.local_task_data import LocalTaskData, load_local_task_data
from participant_node.training.privacy_accountant import (
    NodePrivacyAccountant,
    calibrate_noise_multiplier,
    effective_delta,
)
from participant_node.training.round_replies import RoundReplies
from protocol import (
    ConfigKey,
    EvaluationLayout,
    GroupLabelsReply,
    JobSpec,
    JobSpecError,
    MomentsReply,
    NodeRecord,
    QueryAction,
    RecordKey,
    Refusal,
    StrategyName,
    TrainReply,
    server_round_of,
    spec_of,
)

__all__ = ["Clock", "NodeContext", "handle"]

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class NodeContext:
    """Where one node's data and state live, and its clock (the moment of use for consent checks)."""

    partner_dir: Path
    partner_id: str
    state_dir: Path
    clock: Clock = field(default=_utc_now)

    @classmethod
    def from_node_config(
        cls,
        config: Mapping[str, object],
        partner_dirs: Sequence[Path | str] | None = None,
        clock: Clock | None = None,
    ) -> NodeContext:
        """Read Flower's node config: ``partner-dir`` (simulating: ``partition-id`` into ``partner_dirs``)."""
        if "partner-dir" in config:
            partner_dir = Path(str(config["partner-dir"]))
        elif partner_dirs is not None and "partition-id" in config:
            partner_dir = Path(partner_dirs[int(str(config["partition-id"]))])
        else:
            raise TrainingError("node is not configured: set node_config partner-dir=<partner folder>")
        return cls(
            partner_dir=partner_dir,
            partner_id=str(config.get("partner-id", partner_dir.name)),
            state_dir=Path(str(config.get("state-dir", partner_dir / ".loyalfed"))),
            clock=clock or _utc_now,
        )

    @property
    def accountant(self) -> NodePrivacyAccountant:
        return NodePrivacyAccountant(self.state_dir / "privacy_accountant.json")

    @property
    def round_replies(self) -> RoundReplies:
        return RoundReplies(self.state_dir / "round_replies")

    def record_usage(self, job_id: str, server_round: int, member_ids: np.ndarray) -> None:
        """Keep, at the node only, which members each round trained on (answers 'was my data used?')."""
        path = self.state_dir / "usage" / f"{job_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"round": server_round, "member_ids": [str(m) for m in member_ids]}) + "\n")


def handle(message: Message, node: NodeContext) -> Message:
    """Serve one coordinator message; a refused job gets a ``Refusal`` reply, other failures raise."""
    kind, _, action = message.metadata.message_type.partition(".")
    handler = _HANDLERS.get((kind, action or (QueryAction.DESCRIBE if kind == MessageType.QUERY else "")))
    if handler is None:
        raise TrainingError(f"the node does not serve {message.metadata.message_type!r} messages")
    try:
        content = handler(message.content, node)
    except (JobSpecError, PrivacyBudgetError) as err:
        content = Refusal(node.partner_id, str(err)).to_content()
    return Message(content, reply_to=message)


def describe(content: RecordDict, node: NodeContext) -> RecordDict:
    from participant_node.data import fingerprint_partner

    spec_of(content)  # a node that cannot accept the job says so before any member data is read
    record = NodeRecord(node.partner_id, fingerprint_partner(node.partner_dir))
    return RecordDict({RecordKey.NODE: record.to_record()})


def feature_moments(content: RecordDict, node: NodeContext) -> RecordDict:
    spec = spec_of(content)
    if spec.standardisation is not None:
        raise TrainingError("feature moments are taken on the public scaling: send no standardisation")
    data = load_local_task_data(node.partner_dir, spec, at=node.clock())
    if len(data.train) < spec.k_min:
        raise TrainingError(
            f"only {len(data.train)} training members; feature moments need at least k={spec.k_min}"
        )
    moments = FeatureMoments.of(data.train.X)
    content = MomentsReply(
        _node_record(node, data), moments.count, moments.sums, moments.sums_of_squares
    ).to_content()
    # The same reply answers ``query.group_labels`` too (its own record): one message fewer per job,
    # the same facts to the same party under the same gate (the server fixes the layout with them).
    content[RecordKey.GROUPS] = _group_labels(node, data)[RecordKey.GROUPS]
    return content


def train(content: RecordDict, node: NodeContext) -> RecordDict:
    if _config(content).get(ConfigKey.SECURE_SUM):
        # A SecAgg+ round summing evaluation vectors rides on train messages: it trains nothing.
        return _evaluation(content, node, secure=True)
    spec = spec_of(content)
    incoming, server_round = _arrays_of(content), server_round_of(content)
    # A round asked again with the same model (a job resumed after a coordinator crash) gets the
    # reply already released, not a second noisy update (participant_node.training.round_replies).
    kept = node.round_replies.get(spec.job_id, server_round, incoming)
    if kept is not None:
        return _train_content(*kept)
    data = load_local_task_data(node.partner_dir, spec, at=node.clock())
    model = _model_with(incoming, spec, data)
    reply = _train_round(node, spec, data, model)
    node.record_usage(spec.job_id, server_round, data.train.member_ids)
    arrays = ArrayRecord(model.state_dict())
    node.round_replies.put(spec.job_id, server_round, incoming, arrays, reply)
    return _train_content(arrays, reply)


def _train_content(arrays: ArrayRecord, reply: TrainReply) -> RecordDict:
    return RecordDict(
        {RecordKey.ARRAYS: arrays, RecordKey.METRICS: reply.metrics(), RecordKey.NODE: reply.node.to_record()}
    )


def evaluate(content: RecordDict, node: NodeContext) -> RecordDict:
    return _evaluation(content, node, secure=False)


def _config(content: RecordDict) -> Mapping[str, object]:
    return content.config_records.get(RecordKey.CONFIG, ConfigRecord())


def _evaluation(content: RecordDict, node: NodeContext, *, secure: bool) -> RecordDict:
    spec = spec_of(content)
    layout_wire = _config(content).get(ConfigKey.EVALUATION_LAYOUT)
    layout = EvaluationLayout.from_wire(layout_wire) if layout_wire else EvaluationLayout()
    data = load_local_task_data(node.partner_dir, spec, at=node.clock())
    model = _model_with(_arrays_of(content), spec, data)
    reply = release_heldout_evaluation(
        model,
        data,
        spec,
        layout,
        node=_node_record(node, data),
        accountant=node.accountant,
        secure=secure,
        release_file=node.state_dir / "evaluation_releases" / f"{spec.job_id}.npz",
    )
    return reply.to_content()


def group_labels(content: RecordDict, node: NodeContext) -> RecordDict:
    spec = spec_of(content)
    return _group_labels(node, load_local_task_data(node.partner_dir, spec, at=node.clock()))


def _group_labels(node: NodeContext, data: LocalTaskData) -> RecordDict:
    labels = sorted(
        (attribute, str(group))
        for attribute, values in data.heldout.groups.items()
        for group in set(values) - {"unknown"}
    )
    heldout = rounded_member_count(len(data.heldout))
    return GroupLabelsReply(_node_record(node, data), tuple(labels), heldout).to_content()


def privacy_spent(content: RecordDict, node: NodeContext) -> RecordDict:
    """The job's ε by the node's own accountant, at the smallest δ it trained with (the largest ε)."""
    spec = spec_of(content)
    reply = job_spend(
        node.accountant,
        partner_id=node.partner_id,
        job_id=spec.job_id,
        purpose=spec.purpose,
        default_delta=spec.delta,
    )
    return reply.to_content()


_Handler = Callable[[RecordDict, NodeContext], RecordDict]
_HANDLERS: dict[tuple[str, str], _Handler] = {
    (MessageType.QUERY, QueryAction.DESCRIBE): describe,
    (MessageType.QUERY, QueryAction.FEATURE_MOMENTS): feature_moments,
    (MessageType.QUERY, QueryAction.PRIVACY_SPENT): privacy_spent,
    (MessageType.QUERY, QueryAction.GROUP_LABELS): group_labels,
    (MessageType.TRAIN, ""): train,
    (MessageType.EVALUATE, ""): evaluate,
}


def _arrays_of(content: RecordDict) -> ArrayRecord:
    if RecordKey.ARRAYS not in content.array_records:
        raise TrainingError(f"the request has no '{RecordKey.ARRAYS}' record: nothing to train or evaluate")
    return content.array_records[RecordKey.ARRAYS]


def _model_with(arrays: ArrayRecord, spec: JobSpec, data: LocalTaskData) -> torch.nn.Module:
    model = make_model(spec.model, data.train.X.shape[1])
    model.load_state_dict(arrays.to_torch_state_dict())
    return model


def _train_round(node: NodeContext, spec: JobSpec, data: LocalTaskData, model: torch.nn.Module) -> TrainReply:
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
    # The charge is recorded before any update exists: the node's accountant is the authority on
    # what the job spent, whether or not the reply reaches the coordinator.
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
        proximal_mu=spec.proximal_mu if spec.strategy is StrategyName.FEDPROX else 0.0,
        intercept_input=intercept_input(spec.model, standardised=spec.standardisation is not None),
    )
    cpu_started = time.process_time()
    stats = train_dp_sgd(model, data.train.X, data.train.y, settings)
    return TrainReply(
        node=_node_record(node, data),
        num_examples=n,
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=sigma,
        sample_rate=stats.sample_rate,
        steps=sum(e.steps for e in previous) + stats.steps,
        train_loss=stats.mean_loss,
        cpu_seconds=time.process_time() - cpu_started,
    )


def _node_record(node: NodeContext, data: LocalTaskData) -> NodeRecord:
    return NodeRecord(
        partner_id=node.partner_id,
        data_fingerprint=data.data_fingerprint,
        consent_snapshot_hash=data.consent_snapshot_hash,
        members_used=data.members_used,
        members_excluded_by_consent=data.members_excluded_by_consent,
    )
