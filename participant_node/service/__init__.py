"""The partner's node service (``loyalfed node serve``): its agent next to its own data.

It registers with the coordinator, supervises the partner's SuperNode, serves the node's mTLS API
(PSI, points) and is the enforcement point of every job step (``job_gate``): its own data officer's
signature, its own accountant and yearly cap, the consent gate. ``node_runtime.NodeRuntime`` runs it.
"""

from participant_node.service.errors import (
    CoordinatorUnavailableError,
    JobRefusedError,
    NodeSetupError,
    ServiceError,
)
from participant_node.service.settings import NodeSettings

__all__ = ["CoordinatorUnavailableError", "JobRefusedError", "NodeSettings", "NodeSetupError", "ServiceError"]
