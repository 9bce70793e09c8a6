"""The node's side of federated training: Flower ClientApp, Opacus DP-SGD, privacy accountant, evaluation."""

from participant_node.training.client_app import make_client_app
from participant_node.training.errors import PrivacyBudgetError, TrainingError, TrainingSpecError
from participant_node.training.privacy_accountant import (
    NodePrivacyAccountant,
    calibrate_noise_multiplier,
    effective_delta,
    rdp_epsilon,
)
from participant_node.training.training_spec import TrainingSpec, parse_training_spec

__all__ = [
    "NodePrivacyAccountant",
    "PrivacyBudgetError",
    "TrainingError",
    "TrainingSpec",
    "TrainingSpecError",
    "calibrate_noise_multiplier",
    "effective_delta",
    "make_client_app",
    "parse_training_spec",
    "rdp_epsilon",
]
