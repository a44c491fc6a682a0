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
from ..cuda._ext import is_device_array

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


def qmatmul(
    x, w_raw, qtype, shape, threads: int = 0, *, out=None, accumulate: bool = False, stream=None
):
    """``x @ W.T`` for a GGUF-quantized matrix W (on the GPU when x and W are device arrays).

    Args:
        x: float32 array (K,) or (M, K).
        w_raw: the GGUF tensor bytes (uint8, or any contiguous array whose bytes are the
            tensor, e.g. the float32/float16 data of an F32/F16 tensor), N * K / bs * type_size
            bytes in total.
        qtype: type name ("Q4_K"), ggml type id, or ``gguf.GGMLQuantizationType``.
        shape: (N, K), the numpy shape of W (GGUF lists it reversed as (K, N)).
        threads: native threads (0 = the global default, see ``pylm.set_threads``).
        out: optional float32 result array of the result's shape (device array on the GPU).
        accumulate: add the product into ``out`` (fuses a residual add on the GPU).
        stream: GPU only: a cudaStream_t as int; None = the current stream of x's library.

    On the GPU (x and w_raw CUDA device arrays, e.g. torch tensors: w_raw the tensor's bytes as
    uint8, uploaded unchanged): x may be float32, float16 or bfloat16; supported qtypes Q4_0,
    Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, F32, F16, BF16. Decode shapes (M <= 8) run a GEMV that
    dequantizes in registers; larger M dequantizes to f16/bf16 and uses the tensor cores.

    Returns:
        float32 array (N,) for 1-D x, (M, N) for 2-D x (``out`` when given).

    Raises:
        ValueError: unknown or unsupported qtype, K not a multiple of the block size,
            x.shape[-1] != K, or a byte count that does not match shape.
        RuntimeError: device arrays but no usable GPU (never a silent CPU fallback).
    """
    n, k = _as_shape(shape)
    if isinstance(qtype, np.integer):
        qtype = int(qtype)
    if is_device_array(x) or is_device_array(w_raw):
        return _qmatmul_device(x, w_raw, qtype, n, k, out, accumulate, stream)
    if accumulate and out is None:
        raise ValueError("qmatmul: accumulate=True needs out=")
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"qmatmul: x must be float32, got {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"qmatmul: x must be 1-D or 2-D, got shape {x.shape}")
    x2 = np.ascontiguousarray(x.reshape(1, -1) if x.ndim == 1 else x)
    y = _core.qmatmul(x2, _weights_as_bytes(w_raw), qtype, n, k, int(threads))
    y = y[0] if x.ndim == 1 else y
    if out is None:
        return y
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != y.shape:
        raise ValueError(f"qmatmul: out must be a float32 numpy array of shape {y.shape}")
    if accumulate:
        out += y
    else:
        out[...] = y
    return out


def _qmatmul_device(x, w_raw, qtype, n, k, out, accumulate, stream):
    from ..cuda import ops as cuda_ops
    from ..cuda._ext import module
    from ..cuda.stream import resolve_stream

    if hasattr(qtype, "name") and not isinstance(qtype, str):  # gguf.GGMLQuantizationType
        qtype = int(qtype)
    if len(x.shape) not in (1, 2):
        raise ValueError(f"qmatmul: x must be 1-D or 2-D, got shape {tuple(x.shape)}")
    if out is None:
        if accumulate:
            raise ValueError("qmatmul: accumulate=True needs out=")
        shape = (n,) if len(x.shape) == 1 else (x.shape[0], n)
        out = cuda_ops._empty_like(x, shape, "float32")
    s = resolve_stream(stream, x)
    module().qmatmul(w_raw, qtype, n, k, x, out, bool(accumulate), s)
    return cuda_ops._mark(out, s)


def qmatvec(x, w_raw, qtype, shape, threads: int = 0) -> np.ndarray:
    """``W @ x`` for one float32 vector x (K,): returns (N,). Same arguments as ``qmatmul``."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"qmatvec: x must be 1-D, got shape {x.shape}")
    return qmatmul(x, w_raw, qtype, shape, threads)
