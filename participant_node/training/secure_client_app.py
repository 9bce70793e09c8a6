"""The node's ClientApp for jobs with secure aggregation: the same node, wrapped in SecAgg+.

Secure aggregation is composed around the unchanged training handler of ``client_app`` (same
consent gate, local task data, DP-SGD noise calibration and accountant charging):

``redact_errors`` → Flower's ``secaggplus_mod`` (SecAgg+ stages) → ``legacy_fit_mod`` → the node's ``train``.

Flower 1.41's ``secaggplus_mod`` speaks the legacy FitIns/FitRes record layout: it hands the wrapped
handler ``fitins.parameters``/``fitins.config`` and reads ``fitres.parameters``/``fitres.num_examples``
back. ``legacy_fit_mod`` translates between that layout and the Message-API layout our handler uses,
and sends the *update* (new weights minus the global weights the node received) rather than the
weights: updates are small and centred on 0, which is what SecAgg+'s fixed-point quantisation over
``[-clipping_range, clipping_range]`` needs (Bonawitz et al. 2017, §3; Bell et al. 2020, SecAgg+).
The mod then masks the quantised update with pairwise and private masks, so the coordinator only
ever sees a masked vector per node and the unmasked weighted sum over nodes.

The node's accounting figures (ε, σ, q, steps) and its counts travel in clear in ``fitres.metrics``:
they are the same aggregates the plain path sends (see ``client_app``).

A train message whose config carries ``ConfigKey.SECURE_SUM`` asks for the node's held-out
evaluation vector instead (``protocol.evaluation_sum``): the mod sends that vector as the "update",
with weight 1 (``num_examples`` = 1 = the workflow's ``max_weight``), so SecAgg+ hands the
coordinator the mean of the vectors over the K nodes, i.e. their sum divided by K, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from models.networks import make_model
from participant_node.secure_aggregation_mod import secure_aggregation_mod
from participant_node.training.client_app import make_client_app
from participant_node.training.errors import TrainingError
from participant_node.training.job_handler import Clock
from protocol import EvaluationReply, JobSpec, RecordKey, TrainReply, refusal_of
from protocol.wire_keys import ConfigKey

__all__ = [
    "NODE_FIELD_PREFIX",
    "legacy_fit_mod",
    "legacy_fit_serving",
    "make_secure_client_app",
]

NODE_FIELD_PREFIX = "node."  # fitres.metrics keys carrying the node record (partner id, counts)
_FITINS, _FITRES = "fitins", "fitres"


def legacy_fit_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: run the Message-API train handler on a legacy FitIns and reply with a FitRes update.

    A secure sum (``ConfigKey.SECURE_SUM``) releases the node's exact held-out histograms, which is
    safe only because SecAgg+ masks them: it is answered only in the masked-vector stage of a SecAgg+
    round (the request still carries the round's ``secaggplus`` record, so ``secaggplus_mod``
    checked the stage order and masks the reply) and refused in any other message.
    """
    if msg.metadata.message_type != MessageType.TRAIN or f"{_FITINS}.parameters" not in msg.content:
        if msg.metadata.message_type == MessageType.TRAIN:
            _refuse_secure_sum_in_clear(msg.content.config_records.get(RecordKey.CONFIG, ConfigRecord()))
        return call_next(msg, context)
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config = ConfigRecord(dict(fitins.config))
    if RECORD_KEY_CONFIGS not in msg.content.config_records:
        _refuse_secure_sum_in_clear(config)
    global_weights = parameters_to_ndarrays(fitins.parameters)
    legacy_content = msg.content
    # The handler reads the Message-API layout; restore the request for the mods outside this one.
    msg.content = RecordDict(
        {RecordKey.ARRAYS: _named_arrays(global_weights, config), RecordKey.CONFIG: config}
    )
    try:
        reply = call_next(msg, context)
    finally:
        msg.content = legacy_content
    if reply.has_error():
        return reply
    refusal = refusal_of(reply.content)
    if refusal is not None:  # SecAgg+ needs a FitRes: the refusal travels as the node's error
        raise TrainingError(str(refusal))
    if RecordKey.HISTOGRAMS in reply.content.array_records:
        return _evaluation_fitres(reply, msg)
    train = TrainReply.parse(reply.content)  # the node's own reply has the protocol's shape
    local = reply.content.array_records[RecordKey.ARRAYS].to_numpy_ndarrays()
    update = [(new - old).astype(np.float32) for new, old in zip(local, global_weights, strict=True)]
    metrics = reply.content.metric_records[RecordKey.METRICS]
    node = reply.content.config_records[RecordKey.NODE]
    fitres = FitRes(
        status=Status(code=Code.OK, message="ok"),
        parameters=ndarrays_to_parameters(update),
        num_examples=train.num_examples,
        metrics={
            **{k: v for k, v in metrics.items() if isinstance(v, int | float)},
            **{NODE_FIELD_PREFIX + k: v for k, v in node.items() if isinstance(v, int | float | str)},
        },
    )
    return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)


def _refuse_secure_sum_in_clear(config: ConfigRecord) -> None:
    if config.get(ConfigKey.SECURE_SUM):
        raise TrainingError(
            "refused: a secure sum asked outside a SecAgg+ round would send this node's exact "
            "held-out histograms unmasked"
        )


def _evaluation_fitres(reply: Message, msg: Message) -> Message:
    evaluation = EvaluationReply.parse(reply.content)
    node = reply.content.config_records[RecordKey.NODE]
    fitres = FitRes(
        status=Status(code=Code.OK, message="ok"),
        parameters=ndarrays_to_parameters([evaluation.vector]),
        num_examples=1,
        metrics={
            **evaluation.metrics(),
            **{NODE_FIELD_PREFIX + k: v for k, v in node.items() if isinstance(v, int | float | str)},
        },
    )
    return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)


def legacy_fit_serving(serve: Callable[[Message], RecordDict]) -> Callable[[Message], RecordDict]:
    """``serve`` (a message in, its reply's content out) for SecAgg+ training stages too.

    On the deployment engine ``secaggplus_mod`` runs in the SuperNode's ClientApp process and
    forwards the training stage's legacy FitIns to the node service; this wraps the service (its
    gate first) in ``legacy_fit_mod``, so the gate and the handler see the ordinary train message.
    """

    def serve_legacy(message: Message) -> RecordDict:
        context = Context(
            run_id=message.metadata.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
        )
        reply = legacy_fit_mod(message, context, lambda msg, _ctx: Message(serve(msg), reply_to=msg))
        return reply.content

    return serve_legacy


def _named_arrays(weights: list[np.ndarray], config: ConfigRecord) -> ArrayRecord:
    """Give the legacy (unnamed, ordered) weights the state-dict names of the job's network."""
    spec = JobSpec.from_wire(config.get(ConfigKey.JOB_SPEC))
    names = list(make_model(spec.model, spec.schema.n_features).state_dict())
    if len(names) != len(weights):
        raise TrainingError(
            f"the global model has {len(weights)} tensors; a {spec.model} network has {len(names)}"
        )
    return ArrayRecord({name: Array(w) for name, w in zip(names, weights, strict=True)})


def make_secure_client_app(
    partner_dirs: Sequence[Path] | None = None, *, clock: Clock | None = None, mods: Sequence[Mod] = ()
) -> ClientApp:
    """The node's ClientApp with SecAgg+ around training; describe and evaluate are unchanged.

    SecAgg+ stages go through ``secaggplus_mod`` and every other message straight to the node
    (``secure_aggregation_mod``), so the same app serves plain training rounds whose held-out
    histograms alone are summed under SecAgg+ (``JobSpec.secure_evaluation``). ``mods`` run between
    ``secaggplus_mod`` and ``legacy_fit_mod``: they see the plain, unmasked legacy reply (tests use
    this to record each node's update at the node).
    """
    mods = [secure_aggregation_mod, *mods, legacy_fit_mod]
    return make_client_app(partner_dirs, clock=clock, mods=mods)
