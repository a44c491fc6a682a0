"""Fused causal attention for one sequence on the CPU (flash-style online softmax, GQA).

>>> import numpy as np, pylm
>>> q = np.ones((2, 4, 8), np.float32); kv = np.ones((5, 2, 8), np.float32)
>>> pylm.ops.attention(q, kv, kv).shape
(2, 4, 8)
"""

from __future__ import annotations

import numpy as np

from .. import _core

__all__ = ["attention"]


def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    scale: float | None = None,
    causal: bool = True,
    window: int = 0,
    q_pos0: int | None = None,
    softcap: float = 0.0,
    threads: int = 0,
) -> np.ndarray:
    """softmax(q k^T * scale) v per head, without materializing the (T, S) score matrix.

    Query i sits at absolute position ``p = q_pos0 + i`` and, when causal, sees keys ``j <= p``;
    with ``window > 0`` only the last ``window`` positions (``p - j < window``, itself
    included; llama.cpp's sliding window). Query head h reads kv head ``h // (Hq // Hkv)``.
    A query that sees no key returns zeros.

    Args:
        q: (T, Hq, D) float32 queries.
        k, v: (S, Hkv, D) float32 keys and values; Hq must be a multiple of Hkv. Any strides
            with a contiguous last axis work (e.g. ``cache[:S]`` or a head slice).
        scale: score scale, default ``1 / sqrt(D)``.
        causal: False = every query sees all S keys (``window`` must then be 0).
        window: sliding-window length, 0 = off.
        q_pos0: position of the first query, default ``S - T`` (the queries are the last T
            positions).
        softcap: > 0 applies ``softcap * tanh(score / softcap)`` (Gemma 2); 0 = off.
        threads: native threads (0 = the global default).

    Returns:
        (T, Hq, D) float32.

    Raises:
        ValueError: bad dtype/rank/shape (message names the shapes), Hq % Hkv != 0, negative
            window / q_pos0 / softcap, or T > S with no q_pos0.
    """
    return _core.attention(
        q,
        k,
        v,
        None if scale is None else float(scale),
        bool(causal),
        int(window),
        None if q_pos0 is None else int(q_pos0),
        float(softcap),
        int(threads),
    )
