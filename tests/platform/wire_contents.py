"""What a capture holds that must not be there: member identifiers, and a node's unmasked update.

An identifier sent in clear would sit in a run of printable ASCII; a model update sent in clear would
sit as its float32 bytes (Flower carries an array as NumPy's ``.npy`` bytes, values contiguous). A
*window* of an array is 16 bytes of it (four float32 values) that are distinct and non-zero, so that
finding one by chance in other bytes is practically impossible, and a window of an untouched
parameter (all zeros, say) is never looked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord

__all__ = ["printable_runs", "released_update_windows", "update_windows"]

_WINDOW_VALUES = 4


def printable_runs(payloads: Iterable[bytes], shortest: int) -> bytes:
    """Every run of printable ASCII at least ``shortest`` long: where an identifier in clear would sit."""
    pattern = re.compile(rb"[\x20-\x7e]{%d,}" % shortest)
    return b"\n".join(m.group() for payload in payloads for m in pattern.finditer(payload))


def update_windows(arrays: Iterable[np.ndarray], *, per_array: int = 3) -> list[bytes]:
    """Up to ``per_array`` windows of each float32 array (start, middle, end), as sent on the wire."""
    windows = []
    for array in arrays:
        values = np.ascontiguousarray(array, dtype=np.float32).ravel()
        if values.size < _WINDOW_VALUES:
            continue
        last = values.size - _WINDOW_VALUES
        for start in sorted({0, last // 2, last})[:per_array]:
            window = values[start : start + _WINDOW_VALUES]
            if np.all(window != 0) and len(set(window.tolist())) == _WINDOW_VALUES:
                windows.append(window.tobytes())
    return windows


def released_update_windows(model: ArrayRecord, reply: ArrayRecord) -> list[bytes]:
    """Windows of what a node computed for a round: its trained model and its update (model - global).

    The update is computed as the node's SecAgg+ stage computes it before masking
    (``(new - old).astype(float32)``, ``participant_node.training.secure_client_app``).
    """
    asked, answered = model.to_numpy_ndarrays(), reply.to_numpy_ndarrays()
    update = [(new - old).astype(np.float32) for new, old in zip(answered, asked, strict=True)]
    return update_windows(answered) + update_windows(update)
