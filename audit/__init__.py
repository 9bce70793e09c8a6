"""audit: the tamper-evident lineage log (RFC 9162 Merkle tree, signed tree heads, SQLite).

Public face: open an :class:`AuditLog`, append :class:`LineageEvent` s, verify a log file with
:func:`verify_log`, explain a model with :func:`build_lineage_graph`, export OpenLineage.
"""

from audit.anomaly_report import Anomaly, find_anomalies
from audit.audit_client import AuditClient
from audit.audit_log import AuditLog
from audit.errors import AuditError, EventRejectedError, HistoryRewrittenError, LogIntegrityError
from audit.lineage_event import EventType, LineageEvent, Role
from audit.lineage_graph import LineageGraph, build_lineage_graph
from audit.log_verification import VerificationReport, verify_log
from audit.tree_head import SignedTreeHead, TreeHeadSigner, verify_tree_head

_LAZY = {"forward_openlineage", "write_openlineage"}


def __getattr__(name: str) -> object:
    # PEP 562: the OpenLineage client costs ~1 s to import; load it only for the export functions,
    # so a node appending events (or a crashed writer restarting) starts fast.
    if name in _LAZY:
        from audit import openlineage_export

        return getattr(openlineage_export, name)
    raise AttributeError(f"module 'audit' has no attribute {name!r}")


__all__ = [
    "Anomaly",
    "AuditClient",
    "AuditError",
    "AuditLog",
    "EventRejectedError",
    "EventType",
    "HistoryRewrittenError",
    "LineageEvent",
    "LineageGraph",
    "LogIntegrityError",
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
