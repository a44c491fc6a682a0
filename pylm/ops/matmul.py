"""Matrix multiply: f32 on the CPU (blocked, multi-threaded, AVX2 / AVX-512 microkernels), and
f32/f16/bf16 on the GPU when the operands are CUDA device arrays (torch, cupy, ...).

>>> import numpy as np, pylm
>>> a = np.ones((2, 3), np.float32); b = np.ones((3, 4), np.float32)
>>> float(pylm.ops.matmul(a, b)[0, 0])
3.0
"""

from __future__ import annotations

import numpy as np

from .. import _core
from ..cuda._ext import is_device_array

__all__ = ["gemm", "matmul"]


def matmul(
    a: np.ndarray,
    b: np.ndarray,
    transpose_b: bool = False,
    threads: int = 0,
    *,
    transpose_a: bool = False,
    out: np.ndarray | None = None,
    accumulate: bool = False,
) -> np.ndarray:
    """Matrix product of float32 arrays: ``op(a) @ op(b)``.

    Args:
        a: (M, K) float32, or (K,) for a single row (the result is then (N,)).
        b: (K, N) float32, or (N, K) with ``transpose_b=True`` (the weight layout: ``a @ b.T``).
        transpose_b: multiply by ``b.T``.
        threads: native threads (0 = the global default, see ``pylm.set_threads``).
        transpose_a: use ``a.T`` ((K, M) input), e.g. for weight gradients ``x.T @ dy``.
        out: optional float32 (M, N) result array with contiguous rows (may be a slice).
        accumulate: add the product into ``out`` instead of overwriting it.

    Returns:
        The (M, N) float32 product (``out`` when given). Transposed views (``x.T``) and row
        slices are used without copying.

    Device arrays (CUDA torch tensors, cupy arrays): ``a`` and ``b`` both on the GPU, float32,
    float16 or bfloat16 (the same for both); the product is accumulated in fp32 and returned as
    a float32 device array (``out`` may also have the input dtype). ``threads`` is ignored there.

    Raises:
        ValueError: wrong dtype (not float32), wrong rank, or shapes that do not align.
        RuntimeError: device arrays but no usable GPU (never a silent CPU fallback).
    """
    if is_device_array(a) or is_device_array(b):
        if len(getattr(a, "shape", ())) != 2:
            raise ValueError(f"matmul: device a must be 2-D, got shape {tuple(a.shape)}")
        if accumulate and out is None:
            raise ValueError("matmul: accumulate=True needs out=")
        return gemm(
            a, b, out, trans_a=transpose_a, trans_b=transpose_b,
            beta=1.0 if accumulate else 0.0, out_dtype="float32",
        )
    return _core.matmul(
        a, b, bool(transpose_b), bool(transpose_a), int(threads), out, bool(accumulate)
    )


def gemm(
    a,
    b,
    c=None,
    trans_a: bool = False,
    trans_b: bool = False,
    alpha: float = 1.0,
    beta: float = 0.0,
    stream=None,
    *,
    out_dtype: str | None = None,
):
    """``c = alpha * op(a) @ op(b) + beta * c`` on the GPU (tensor cores for f16/bf16).

    Args:
        a: device array (M, K), or (K, M) with ``trans_a``; float32, float16 or bfloat16.
            Transposed views (``x.T``) and row slices are used without copying.
        b: device array (K, N), or (N, K) with ``trans_b`` (the nn.Linear / GGUF weight layout);
            same dtype as ``a``.
        c: optional (M, N) device array with contiguous rows, float32 or a's dtype.
        alpha, beta: scalars; beta == 0 never reads ``c``.
        stream: a cudaStream_t as int; None = the current stream of a's library.
        out_dtype: dtype of a newly allocated ``c`` (default: a's dtype).

    Returns:
        ``c`` (allocated with a's library when not given).

    >>> # y = x @ w.T with torch tensors on the GPU:  pylm.ops.gemm(x, w, trans_b=True)

    Raises:
        ValueError: not device arrays, mismatched dtypes or shapes.
        RuntimeError: no usable GPU, or pylm built without CUDA.
    """
    from ..cuda import ops as cuda_ops
    from ..cuda._ext import module
    from ..cuda.stream import resolve_stream

    if c is None:
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise ValueError(f"gemm: a and b must be 2-D, got {tuple(a.shape)} and {tuple(b.shape)}")
        m = a.shape[1] if trans_a else a.shape[0]
        n = b.shape[0] if trans_b else b.shape[1]
        c = cuda_ops._empty_like(a, (m, n), out_dtype or cuda_ops.describe(a)["dtype"])
    s = resolve_stream(stream, a)
    module().gemm(a, b, c, bool(trans_a), bool(trans_b), float(alpha), float(beta), s)
    return cuda_ops._mark(c, s)
