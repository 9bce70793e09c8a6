"""The node's secure-aggregation mod: Flower's ``secaggplus_mod`` for SecAgg+ rounds, nothing otherwise.

Flower 1.41's ``secaggplus_mod`` expects every train message to be a SecAgg+ stage (it reads the
stage from the message's ``secaggplus`` config record and fails on any other train message). The
node's ClientApp serves plain and secure jobs alike, so this mod hands a train message to
``secaggplus_mod`` only when it carries that record (Bell et al., CCS 2020: setup, share keys,
collect masked vectors, unmask), and every other message straight to the node's handler.

The mod must run where the SuperNode keeps the run's context (``context.state`` holds the node's
SecAgg+ keys and shares between stages): in the ClientApp process, around the node's handler. It
imports Flower only, so the SuperNode's per-message ClientApp processes stay light.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

__all__ = ["is_secure_aggregation_stage", "secure_aggregation_mod"]


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
