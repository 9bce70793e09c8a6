"""The node's gate on every use of member data, its consent store and data-subject rights."""

from participant_node.consent.errors import ConsentStoreError, SubjectRequestError
from participant_node.consent.node_gate import (
    GatedData,
    GateRefusedError,
    GateRule,
    MemberDataUse,
    TransferRefusedError,
    admit,
    gate_partner_data,
)
from participant_node.consent.selection import consented_members
from participant_node.consent.store import ConsentStore, ErasureRequest, store_path
from policies.consent_filter import ConsentSelection

__all__ = [
    "ConsentSelection",
    "ConsentStore",
    "ConsentStoreError",
    "ErasureRequest",
    "GateRefusedError",
    "GateRule",
    "GatedData",
    "MemberDataUse",
    "SubjectRequestError",
    "TransferRefusedError",
    "admit",
    "consented_members",
    "gate_partner_data",
    "store_path",
]
