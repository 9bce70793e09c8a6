"""The node's consent gate, consent store and data-subject rights (issue 5 items 4-5)."""

from participant_node.consent.errors import ConsentStoreError, SubjectRequestError
from participant_node.consent.node_gate import GatedData, TransferRefusedError, gate_partner_data
from participant_node.consent.selection import consented_members
from participant_node.consent.store import ConsentStore, ErasureRequest, store_path
from policies.consent_filter import ConsentSelection

__all__ = [
    "ConsentSelection",
    "ConsentStore",
    "ConsentStoreError",
    "ErasureRequest",
    "GatedData",
    "SubjectRequestError",
    "TransferRefusedError",
    "consented_members",
    "gate_partner_data",
    "store_path",
]
