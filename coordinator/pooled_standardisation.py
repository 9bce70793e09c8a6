"""The job's pooled standardisation, from every node's k-member feature moments.

Before round 1 of a standardising job the coordinator asks each described node for the count, sums
and sums of squares of its training members' publicly scaled features (aggregates over at least k
members; not differentially private, see ``models.feature_standardisation``) and pools them into
the one standardisation every node then trains and evaluates with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from coordinator.job_errors import JobFailedError
from coordinator.node_refusal import RefusalCallback, refuse_if_refused
from models.dp_schedule import rounded_member_count
from models.feature_standardisation import FeatureMoments, Standardisation
from protocol import (
    GroupLabelsReply,
    JobSpec,
    MalformedReplyError,
    MomentsReply,
    QueryAction,
    RecordKey,
    job_config_record,
    query_type,
)
from protocol.replies import moments_fields

__all__ = ["PooledMoments", "feature_moments_of", "pooled_standardisation"]

_log = logging.getLogger(__name__)


def feature_moments_of(record: Mapping[str, Any]) -> FeatureMoments:
    """A node's ``moments`` record as moments; ``MalformedReplyError``/``ValueError`` if malformed."""
    return FeatureMoments(**moments_fields(record))


@dataclass(frozen=True)
class PooledMoments:
    """The pooled standardisation and each answering node's training-member count, rounded to two
    significant figures (what a node's schema summary discloses anyway)."""

    standardisation: Standardisation
    rounded_counts: tuple[int, ...]
    # Each answering node's held-out group labels, which a node sends with its moments (the layout
    # of the job's evaluation is fixed from them); None when a node sent none (then asked later).
    group_labels: tuple[GroupLabelsReply, ...] | None = None


def pooled_standardisation(
    grid: Grid, node_ids: list[int], job: JobSpec, *, on_refusal: RefusalCallback | None = None
) -> PooledMoments:
    """Ask the described nodes for their feature moments and pool them (k-member aggregates)."""
    content = RecordDict({RecordKey.CONFIG: job_config_record(job)})
    kind = query_type(QueryAction.FEATURE_MOMENTS)
    messages = [Message(content, dst_node_id=n, message_type=kind) for n in node_ids]
    parts, labels = [], []
    for reply in grid.send_and_receive(messages, timeout=job.round_timeout_s):
        node = reply.metadata.src_node_id
        if reply.has_error():
            _log.warning("feature moments: node %s failed: %s", node, reply.error.reason)
            continue
        try:
            refuse_if_refused(reply, on_refusal)
            moments = MomentsReply.parse(reply.content)
            groups = GroupLabelsReply.parse(reply.content) if RecordKey.GROUPS in reply.content else None
            parts.append(FeatureMoments(moments.count, moments.sums, moments.sums_of_squares))
            labels.append(groups)
        except (MalformedReplyError, ValueError) as err:
            _log.warning("feature moments: node %s sent a malformed reply: %s", node, err)
    if len(parts) < job.min_nodes:
        raise JobFailedError(f"only {len(parts)} nodes sent feature moments; the job needs {job.min_nodes}")
    try:
        standardisation = FeatureMoments.pooled(parts).standardisation()
    except ValueError as err:
        raise JobFailedError(f"feature moments could not be pooled: {err}") from err
    if standardisation.n_features != job.schema.n_features:
        raise JobFailedError(
            f"nodes sent moments of {standardisation.n_features} features; "
            f"the schema has {job.schema.n_features}"
        )
    known = tuple(g for g in labels if g is not None)
    return PooledMoments(
        standardisation,
        tuple(rounded_member_count(p.count) for p in parts),
        known if len(known) == len(labels) else None,
    )
