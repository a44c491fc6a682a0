"""Fused attention: one sequence on the CPU (numpy), or on the GPU for device arrays.

``attention`` runs the CPU kernel on numpy arrays and the CUDA flash kernel on device arrays
(torch/cupy/jax CUDA arrays, pylm.cuda.Array: see ``pylm.cuda.is_device_array``).
``flash_attn`` (batched prefill/training) and ``paged_attn`` (decode over a paged KV cache) are
GPU-only; without a usable GPU they raise RuntimeError, never fall back to the CPU.

>>> import numpy as np, pylm
>>> q = np.ones((2, 4, 8), np.float32); kv = np.ones((5, 2, 8), np.float32)
>>> pylm.ops.attention(q, kv, kv).shape
(2, 4, 8)
"""

from __future__ import annotations

import numpy as np

from .. import _core
from ..cuda._ext import is_device_array

__all__ = ["attention", "flash_attn", "paged_attn"]


def _cuda_parts():
    from ..cuda import ops as cuda_ops
    from ..cuda._ext import module
    from ..cuda.stream import resolve_stream

    return module(), cuda_ops, resolve_stream


def _new_like(q):
    """A new device array like q (q's library: torch, cupy; else a pylm.cuda.Array)."""
    _, cuda_ops, _ = _cuda_parts()
    info = cuda_ops.describe(q)
    return cuda_ops._empty_like(q, info["shape"], info["dtype"])


def _empty_for_binding(q):
    """Called by pylm._cuda.flash_attn / paged_attn when out=None."""
    return _new_like(q)


def flash_attn(q, k, v, causal: bool = True, scale: float | None = None, window: int = 0,
               softcap: float = 0.0, q_offset: int | None = None, out=None, lse=None,
               stream=None):
    """Batched flash attention forward on the GPU (online softmax in fp32, no T x T matrix).

    Query i sits at position ``q_offset + i`` (default ``Tk - Tq`` when causal) and, when
    causal, sees keys ``j <= q_offset + i``; ``window > 0`` keeps only ``pos - j < window``;
    ``softcap > 0`` maps scores to ``softcap * tanh(score / softcap)``. Query head h reads kv
    head ``h // (Hq // Hkv)``. A query that sees no key returns zeros (lse = -inf).

    Args:
        q: device array [B, Tq, Hq, D] (or [Tq, Hq, D]), float32/float16/bfloat16,
            D in {64, 128, 256}; heads D apart, D contiguous.
        k, v: [B, Tk, Hkv, D] of q's dtype; Hq must be a multiple of Hkv.
        out: optional output like q (a new array of q's library when None).
        lse: optional float32 [B, Hq, Tq] receiving log-sum-exp of the scaled scores.
        stream: CUDA stream (int, torch/cupy stream; default: see ``pylm.cuda.stream``).

    Returns:
        out.

    Raises:
        ValueError: bad shapes/dtypes/head dim (the message names the value).
        RuntimeError: pylm built without CUDA, or no usable GPU.
    """
    mod, cuda_ops, resolve_stream = _cuda_parts()
    s = resolve_stream(stream, q)
    if out is None:
        out = _new_like(q)
    mod.flash_attn(q, k, v, causal=bool(causal), scale=None if scale is None else float(scale),
                   window=int(window), softcap=float(softcap),
                   q_offset=None if q_offset is None else int(q_offset), out=out, lse=lse,
                   stream=s)
    return cuda_ops._mark(out, s)


def paged_attn(q, k_cache, v_cache, block_tables, context_lens, scale: float | None = None,
               window: int = 0, softcap: float = 0.0, out=None, max_context_len: int | None = None,
               stream=None):
    """Decode attention over the paged KV cache on the GPU (split-K over long contexts).

    Sequence s holds ``context_lens[s]`` tokens, token t in block ``block_tables[s, t // bs]``
    at row ``t % bs``; its Tq queries are the last Tq positions (their own K/V already cached)
    and see keys causally (plus ``window`` / ``softcap`` as in ``flash_attn``).

    Args:
        q: device array [S, Tq, Hq, D] (or [S, Hq, D]), contiguous, float32/float16/bfloat16.
        k_cache, v_cache: [num_blocks, block_size, Hkv, D] contiguous, float32/float16/bfloat16.
        block_tables: int32 [S, max_blocks_per_seq]; context_lens: int32 [S].
        out: optional output like q.
        max_context_len: upper bound of context_lens (sizes the split grid); default
            ``max_blocks_per_seq * block_size``.

    Returns:
        out, q's dtype and shape.
    """
    mod, cuda_ops, resolve_stream = _cuda_parts()
    s = resolve_stream(stream, q)
    if out is None:
        out = _new_like(q)
    mod.paged_attn(q, k_cache, v_cache, block_tables, context_lens,
                   scale=None if scale is None else float(scale), window=int(window),
                   softcap=float(softcap), out=out,
                   max_context_len=None if max_context_len is None else int(max_context_len),
                   stream=s)
    return cuda_ops._mark(out, s)


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

    Device arrays (torch CUDA tensors, cupy, ...) run ``flash_attn`` on the GPU instead, with
    q's dtype (float32/float16/bfloat16) and D in {64, 128, 256}; ``threads`` is then unused.

    Raises:
        ValueError: bad dtype/rank/shape (message names the shapes), Hq % Hkv != 0, negative
            window / q_pos0 / softcap, or T > S with no q_pos0.
        RuntimeError: device arrays without a usable GPU.
    """
    if is_device_array(q):
        return flash_attn(q, k, v, causal=causal, scale=scale, window=window, softcap=softcap,
                          q_offset=q_pos0)
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
