"""Quantized matrix x vector / matrix x matrix on GGUF weights: ``y = x @ W.T``.

W is an (N, K) matrix kept in its GGUF block format (the raw tensor bytes, e.g.
``GGUFReader(...).tensors[i].data``); x is float32. The activations are quantized to 8 bits
once per call and every weight block is dotted in integer SIMD arithmetic (the scheme of
llama.cpp's CPU backend); F32/F16/BF16 weights use float dot products.

>>> import numpy as np, gguf, pylm
>>> w = gguf.quants.quantize(np.ones((3, 64), np.float32), gguf.GGMLQuantizationType.Q8_0)
>>> pylm.ops.qmatvec(np.ones(64, np.float32), w, "Q8_0", (3, 64)).tolist()
[64.0, 64.0, 64.0]
"""

from __future__ import annotations

import numpy as np

from .. import _core

__all__ = ["qmatmul", "qmatvec"]


def _weights_as_bytes(w_raw) -> np.ndarray:
    w = np.asarray(w_raw)
    if not w.flags.c_contiguous:
        raise ValueError("qmatmul: w_raw must be C-contiguous")
    return w.reshape(-1).view(np.uint8)


def _as_shape(shape) -> tuple[int, int]:
    try:
        n, k = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"qmatmul: shape must be (N, K), got {shape!r}") from None
    return n, k


def qmatmul(x, w_raw, qtype, shape, threads: int = 0) -> np.ndarray:
    """``x @ W.T`` for a GGUF-quantized matrix W.

    Args:
        x: float32 array (K,) or (M, K).
        w_raw: the GGUF tensor bytes (uint8, or any contiguous array whose bytes are the
            tensor, e.g. the float32/float16 data of an F32/F16 tensor), N * K / bs * type_size
            bytes in total.
        qtype: type name ("Q4_K"), ggml type id, or ``gguf.GGMLQuantizationType``.
        shape: (N, K), the numpy shape of W (GGUF lists it reversed as (K, N)).
        threads: native threads (0 = the global default, see ``pylm.set_threads``).

    Returns:
        float32 array (N,) for 1-D x, (M, N) for 2-D x.

    Raises:
        ValueError: unknown or unsupported qtype, K not a multiple of the block size,
            x.shape[-1] != K, or a byte count that does not match shape.
    """
    n, k = _as_shape(shape)
    if isinstance(qtype, np.integer):
        qtype = int(qtype)
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"qmatmul: x must be float32, got {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"qmatmul: x must be 1-D or 2-D, got shape {x.shape}")
    x2 = np.ascontiguousarray(x.reshape(1, -1) if x.ndim == 1 else x)
    y = _core.qmatmul(x2, _weights_as_bytes(w_raw), qtype, n, k, int(threads))
    return y[0] if x.ndim == 1 else y


def qmatvec(x, w_raw, qtype, shape, threads: int = 0) -> np.ndarray:
    """``W @ x`` for one float32 vector x (K,): returns (N,). Same arguments as ``qmatmul``."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"qmatvec: x must be 1-D, got shape {x.shape}")
    return qmatmul(x, w_raw, qtype, shape, threads)
