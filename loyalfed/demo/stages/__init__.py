"""The demo's stages, in the order they run. Each stage lives in its own module."""

from __future__ import annotations

from loyalfed.demo.pipeline import Stage


def default_stages() -> list[Stage]:
    """The full demo pipeline: data, matching, approvals, training, interchange, audit."""
    from loyalfed.demo.stages.approvals import PolicyApprovals
    from loyalfed.demo.stages.audit_log import OpenAuditLog, VerifyAuditLog
    from loyalfed.demo.stages.build_federation import BuildFederation
    from loyalfed.demo.stages.federated_training import FederatedTraining
    from loyalfed.demo.stages.member_matching import MemberMatching
    from loyalfed.demo.stages.points_interchange import PointsInterchange
    from loyalfed.demo.stages.reference_models import ReferenceModels

    return [
        BuildFederation(),
        OpenAuditLog(),
        PolicyApprovals(),
        MemberMatching(),
        ReferenceModels(),
        FederatedTraining(),
        PointsInterchange(),
        VerifyAuditLog(),
    ]
