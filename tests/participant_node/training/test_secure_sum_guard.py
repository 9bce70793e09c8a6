"""A node answers a secure sum (its exact held-out histograms) only inside a SecAgg+ round."""

from __future__ import annotations

import flwr.compat.common.recorddict_compat as compat
import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common import FitIns, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from models.networks import make_model
from participant_node.training.errors import TrainingError
from participant_node.training.secure_client_app import legacy_fit_mod
from protocol import JobSpec, RecordKey
from protocol.wire_keys import ConfigKey

pytestmark = pytest.mark.usefixtures("in_a_flower_run")


class _HandlerReached(Exception):
    """The node's handler was asked (what it would answer is the secure deployment tests' part)."""


def _context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def _never_called(msg: Message, context: Context) -> Message:
    raise AssertionError("the node's handler must not see a secure sum asked in clear")


def _train(content: RecordDict) -> Message:
    return Message(content, dst_node_id=1, message_type=MessageType.TRAIN)


def _legacy_secure_sum(*, inside_secagg: bool) -> RecordDict:
    spec = JobSpec.model_validate({"task": "churn"})
    network = make_model(spec.model, spec.schema.n_features)
    weights = [np.zeros(tuple(w.shape)) for w in network.state_dict().values()]
    config = {str(ConfigKey.SECURE_SUM): True, str(ConfigKey.JOB_SPEC): spec.to_wire()}
    fitins = FitIns(ndarrays_to_parameters(weights), config)
    content = compat.fitins_to_recorddict(fitins, keep_input=True)
    if inside_secagg:
        content.config_records[RECORD_KEY_CONFIGS] = ConfigRecord({"stage": "collect_masked_vectors"})
    return content


def test_a_secure_sum_in_a_plain_train_message_is_refused() -> None:
    content = RecordDict({RecordKey.CONFIG: ConfigRecord({str(ConfigKey.SECURE_SUM): True})})
    with pytest.raises(TrainingError, match="outside a SecAgg\\+ round"):
        legacy_fit_mod(_train(content), _context(), _never_called)


def test_a_secure_sum_in_a_legacy_fitins_without_the_secagg_round_is_refused() -> None:
    with pytest.raises(TrainingError, match="unmasked"):
        legacy_fit_mod(_train(_legacy_secure_sum(inside_secagg=False)), _context(), _never_called)


def test_a_secure_sum_inside_the_secagg_round_reaches_the_handler() -> None:
    seen: list[RecordDict] = []

    def handler(msg: Message, context: Context) -> Message:
        seen.append(msg.content)
        raise _HandlerReached

    with pytest.raises(_HandlerReached):
        legacy_fit_mod(_train(_legacy_secure_sum(inside_secagg=True)), _context(), handler)
    assert len(seen) == 1
    assert seen[0].config_records[RecordKey.CONFIG][ConfigKey.SECURE_SUM] is True
