"""A node trains each round of a job once: the same request again gets the same reply, at no new ε.

When the coordinator crashes mid-round, the job resumes from its last round checkpoint and asks
again for the round that was in flight, with the same global model. Training it again would release
a second, independently noised update of the same members' data — a second real charge on their
privacy budget (sequential composition; Dwork & Roth, *The Algorithmic Foundations of Differential
Privacy*, Thm. 3.16). The node keeps its reply to each (job, round, incoming model) and sends it
again instead: re-sending a released output is post-processing and costs nothing (ibid. Prop. 2.1).
A request with another model for the same round is new work, trained and charged as usual.

The replies stay in the node's state folder, with the node's other job records, each beside the
model it answered: with both, the node can show exactly what it released for a round (its model, or
under secure aggregation the update ``reply - model`` that SecAgg+ masked before it left).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

from protocol import NodeRecord, TrainReply

__all__ = ["RoundReplies"]


def model_digest(arrays: ArrayRecord) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for name, array in zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True):
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class RoundReplies:
    """The node's train replies under ``folder/JOB_ID/ROUND-DIGEST.{npz,json}``, and the model each
    answered in ``ROUND-DIGEST.model.npz``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _stem(self, job_id: str, server_round: int, incoming: ArrayRecord) -> Path:
        return self.folder / job_id / f"{server_round}-{model_digest(incoming)[:32]}"

    def get(
        self, job_id: str, server_round: int, incoming: ArrayRecord
    ) -> tuple[ArrayRecord, TrainReply] | None:
        """The reply already sent for this request, or None (a round of 0, unnumbered, is never kept)."""
        if server_round <= 0:
            return None
        stem = self._stem(job_id, server_round, incoming)
        try:
            figures = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
            with np.load(stem.with_suffix(".npz")) as npz:
                arrays = ArrayRecord({k: Array(np.ascontiguousarray(npz[k])) for k in figures["keys"]})
        except (OSError, ValueError, KeyError):
            return None  # none kept (or unreadable): the round is trained afresh
        reply = figures["reply"]
        return arrays, TrainReply(**{**reply, "node": NodeRecord(**reply["node"])})

    def released(self, job_id: str) -> list[tuple[int, ArrayRecord, ArrayRecord]]:
        """Every kept reply of ``job_id``: (round, the model it answered, the reply's model)."""
        out = []
        for figures in (self.folder / job_id).glob("[0-9]*.json"):
            model, reply = figures.with_suffix(".model.npz"), figures.with_suffix(".npz")
            with np.load(model) as asked, np.load(reply) as answered:
                out.append((int(figures.stem.split("-", 1)[0]), _record(asked), _record(answered)))
        return sorted(out, key=lambda item: item[0])

    def put(
        self, job_id: str, server_round: int, incoming: ArrayRecord, arrays: ArrayRecord, reply: TrainReply
    ) -> None:
        if server_round <= 0:
            return
        stem = self._stem(job_id, server_round, incoming)
        stem.parent.mkdir(parents=True, exist_ok=True)
        _save_arrays(incoming, stem.with_suffix(".model.npz"))
        _save_arrays(arrays, stem.with_suffix(".npz"))
        # The figures last: a reply counts as kept only once both files are whole.
        figures = {"keys": list(arrays.keys()), "reply": asdict(reply)}
        temporary = stem.with_name(f".{stem.name}.json")
        temporary.write_text(json.dumps(figures), encoding="utf-8")
        os.replace(temporary, stem.with_suffix(".json"))


def _record(npz: Any) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(npz[k])) for k in npz.files})


def _save_arrays(arrays: ArrayRecord, path: Path) -> None:
    """``arrays`` as ``path`` (npz, names kept), written whole or not at all."""
    tensors: dict[str, Any] = dict(zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True))
    temporary = path.with_name(f".{path.name}")
    with temporary.open("wb") as out:
        np.savez(out, **tensors)
    os.replace(temporary, path)
