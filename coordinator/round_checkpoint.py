"""The server's state after each finished round, on the coordinator's disk, so a job can resume.

After a coordinator or SuperLink crash the Flower run in flight is lost (a restarted SuperLink ends
it ``finished:failed``); the job then resumes as a new Flower run from the last checkpoint: the
global model, the server momentum, the models kept for iterate averaging, the job as trained (its
pooled standardisation included), the round and node reports, and the early-stopping state. The
rounds already finished are not trained again, so no node spends privacy budget on them twice.

Two files per job folder: ``resume.npz`` (the tensors) and ``resume.json`` (the rest), each written
to a temporary name and renamed, so a crash while writing leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

from coordinator.job_errors import JobConfigError
from coordinator.job_outcome import NodeReport, RoundReport
from protocol import JobSpec

__all__ = ["RoundCheckpoint", "load_checkpoint", "save_checkpoint", "saved_round"]

_TENSORS, _STATE = "resume.npz", "resume.json"
_VERSION = 1


@dataclass(frozen=True)
class RoundCheckpoint:
    """Everything the server needs to go on after ``server_round``."""

    server_round: int
    job: JobSpec  # as trained: with the pooled standardisation, if any
    arrays: ArrayRecord
    momentum: list[np.ndarray] | None  # FedAvgM's momentum vector (None before it has one)
    recent: list[ArrayRecord]  # iterate averaging's latest global models, oldest first
    rounds: list[RoundReport]
    nodes: dict[str, NodeReport]
    best_auc: float
    stale: int


def _named(prefix: str, arrays: ArrayRecord) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True)}


def _record(tensors: dict[str, np.ndarray], prefix: str, keys: list[str]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(tensors[f"{prefix}/{k}"])) for k in keys})


def _replace(path: Path, write: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def save_checkpoint(directory: Path, checkpoint: RoundCheckpoint) -> None:
    """Write ``checkpoint`` into ``directory`` (the tensors first, then the state that names them)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = _named("arrays", checkpoint.arrays)
    for index, record in enumerate(checkpoint.recent):
        tensors |= _named(f"recent{index}", record)
    for index, vector in enumerate(checkpoint.momentum or []):
        tensors[f"momentum/{index}"] = vector

    def write_tensors(path: Path) -> None:
        with path.open("wb") as out:
            np.savez(out, **tensors)

    state = {
        "version": _VERSION,
        "server_round": checkpoint.server_round,
        "job": checkpoint.job.to_wire(),
        "keys": list(checkpoint.arrays.keys()),
        "recent": len(checkpoint.recent),
        "momentum": None if checkpoint.momentum is None else len(checkpoint.momentum),
        "rounds": [asdict(r) for r in checkpoint.rounds],
        "nodes": {p: asdict(n) for p, n in checkpoint.nodes.items()},
        "best_auc": checkpoint.best_auc,
        "stale": checkpoint.stale,
    }
    _replace(directory / _TENSORS, write_tensors)
    _replace(directory / _STATE, lambda path: path.write_text(json.dumps(state), encoding="utf-8"))


def saved_round(directory: Path) -> int | None:
    """The round of the checkpoint in ``directory``, None when there is none."""
    try:
        state = json.loads((directory / _STATE).read_text(encoding="utf-8"))
        return int(state["server_round"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_checkpoint(directory: Path, job_id: str) -> RoundCheckpoint | None:
    """Job ``job_id``'s checkpoint in ``directory``; None when there is none; a typed error when broken."""
    if not (directory / _STATE).is_file():
        return None
    try:
        state = json.loads((directory / _STATE).read_text(encoding="utf-8"))
        if state.get("version") != _VERSION:
            raise ValueError(f"checkpoint version {state.get('version')!r}, expected {_VERSION}")
        job = JobSpec.from_wire(state["job"])
        if job.job_id != job_id:
            raise ValueError(f"the checkpoint is job {job.job_id}'s, not {job_id}'s")
        with np.load(directory / _TENSORS) as npz:
            tensors = {name: npz[name] for name in npz.files}
        keys = list(state["keys"])
        momentum = state["momentum"]
        return RoundCheckpoint(
            server_round=int(state["server_round"]),
            job=job,
            arrays=_record(tensors, "arrays", keys),
            momentum=None if momentum is None else [tensors[f"momentum/{i}"] for i in range(momentum)],
            recent=[_record(tensors, f"recent{i}", keys) for i in range(int(state["recent"]))],
            rounds=[RoundReport(**r) for r in state["rounds"]],
            nodes={p: NodeReport(**n) for p, n in state["nodes"].items()},
            best_auc=float(state["best_auc"]),
            stale=int(state["stale"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise JobConfigError(f"{directory}: the round checkpoint cannot be read ({err})") from err
