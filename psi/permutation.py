"""Uniformly random permutations from a seed drawn from a cryptographic source.

The shuffles hide which blinded element belongs to which member; the peer must not predict them.
We expand 32 bytes from ``rng`` with AES-256-CTR (a PRF, NIST SP 800-38A) into one 64-bit key per
position and sort by key: a uniform permutation up to key collisions (probability ≤ n²/2^65).
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from psi.ristretto255 import Rng

__all__ = ["secure_permutation"]


def secure_permutation(n: int, rng: Rng = os.urandom) -> np.ndarray:
    """A random permutation of ``range(n)`` as an int64 array."""
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    encryptor = Cipher(algorithms.AES(rng(32)), modes.CTR(bytes(16))).encryptor()
    keys = np.frombuffer(encryptor.update(bytes(8 * n)), dtype=np.uint64)
    return np.argsort(keys, kind="stable").astype(np.int64)
