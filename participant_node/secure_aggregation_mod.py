"""The node's secure-aggregation mod: Flower's ``secaggplus_mod`` for SecAgg+ rounds, nothing otherwise.

Flower 1.41's ``secaggplus_mod`` expects every train message to be a SecAgg+ stage (it reads the
stage from the message's ``secaggplus`` config record and fails on any other train message). The
node's ClientApp serves plain and secure jobs alike, so this mod hands a train message to
``secaggplus_mod`` only when it carries that record (Bell et al., CCS 2020: setup, share keys,
collect masked vectors, unmask), and every other message straight to the node's handler. A handler
that answers a secure integer sum (exact sums of counts, e.g. score histograms) replies with
``integer_vector_reply``.

The mod must run where the SuperNode keeps the run's context (``context.state`` holds the node's
SecAgg+ keys and shares between stages): in the ClientApp process, around the node's handler. It
imports Flower only, so the SuperNode's per-message ClientApp processes stay light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from participant_node.errors import NodeError

__all__ = ["integer_vector_reply", "is_secure_aggregation_stage", "secure_aggregation_mod"]


def is_secure_aggregation_stage(message: Message) -> bool:
    """Whether ``message`` is a stage of a SecAgg+ round (a train message with SecAgg+ configs)."""
    return (
        message.metadata.message_type == MessageType.TRAIN
        and RECORD_KEY_CONFIGS in message.content.config_records
    )


def secure_aggregation_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: SecAgg+ for the stages of a secure round; every other message passes unchanged."""
    if is_secure_aggregation_stage(msg):
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def integer_vector_reply(
    msg: Message, vectors: Sequence[np.ndarray], metrics: Mapping[str, int | float | str] | None = None
) -> Message:
    """The training-stage reply of a secure integer sum (``coordinator.secure_sum``): weight 1.

    The server sets SecAgg+'s max_weight to 1 and its quantisation range to twice the clipping range,
    so these counts (integers in [0, clipping range], e.g. k-member score histograms) are summed
    exactly; ``metrics`` travel in clear, like the training path's accounting figures.
    """
    arrays = [np.asarray(v) for v in vectors]
    for array in arrays:
        if not np.issubdtype(array.dtype, np.integer) or (array < 0).any():
            raise NodeError("a secure integer sum takes vectors of non-negative integers")
    fitres = FitRes(
        status=Status(code=Code.OK, message="ok"),
        parameters=ndarrays_to_parameters([a.astype(np.float64) for a in arrays]),
        num_examples=1,
        metrics=dict(metrics or {}),
    )
    return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)
