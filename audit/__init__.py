"""audit: the tamper-evident lineage log (RFC 9162 Merkle tree, signed tree heads, SQLite).

Public face: open an :class:`AuditLog`, append :class:`LineageEvent` s, verify a log file with
:func:`verify_log`, explain a model with :func:`build_lineage_graph`, export OpenLineage.
"""

from audit.anomaly_report import Anomaly, find_anomalies
from audit.audit_log import AuditLog
from audit.errors import AuditError
from audit.lineage_event import EventRejectedError, EventType, LineageEvent, Role
from audit.lineage_graph import LineageGraph, build_lineage_graph
from audit.log_verification import VerificationReport, verify_log
from audit.openlineage_export import forward_openlineage, write_openlineage
from audit.tree_head import SignedTreeHead, TreeHeadSigner, verify_tree_head

__all__ = [
    "Anomaly",
    "AuditError",
    "AuditLog",
    "EventRejectedError",
    "EventType",
    "LineageEvent",
    "LineageGraph",
    "Role",
    "SignedTreeHead",
    "TreeHeadSigner",
    "VerificationReport",
    "build_lineage_graph",
    "find_anomalies",
    "forward_openlineage",
    "verify_log",
    "verify_tree_head",
    "write_openlineage",
]
