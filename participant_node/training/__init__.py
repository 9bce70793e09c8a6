"""The node's side of federated training: job handler, Flower ClientApp, Opacus DP-SGD, accountant."""

from participant_node.training.client_app import make_client_app
from participant_node.training.errors import PrivacyBudgetError, TrainingError
from participant_node.training.job_handler import NodeContext, handle
from participant_node.training.privacy_accountant import (
    NodePrivacyAccountant,
    calibrate_noise_multiplier,
    effective_delta,
    rdp_epsilon,
)

__all__ = [
    "NodeContext",
    "NodePrivacyAccountant",
    "PrivacyBudgetError",
    "TrainingError",
    "calibrate_noise_multiplier",
    "effective_delta",
    "handle",
    "make_client_app",
    "rdp_epsilon",
]
