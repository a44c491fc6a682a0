"""Row kernels and activations: RMSNorm, RoPE, softmax, SiLU, GELU, GLUs.

Where the data lives decides where the op runs. numpy (host) arrays run the active ISA's CPU
kernel (``pylm.use_isa``; ``threads=0`` means the global default); they must be C-contiguous
float32 (ValueError otherwise) and outputs are new float32 arrays of the same shape unless
stated. Device arrays (torch/cupy/jax CUDA arrays, pylm.cuda.Array: anything whose
``__dlpack_device__`` reports CUDA or that has ``__cuda_array_interface__``) run the CUDA kernels
of ``pylm.cuda.ops`` (float32/float16/bfloat16, fp32 math; ``stream=`` picks the CUDA stream, see
``pylm.cuda.stream``). A device array on a build or machine without CUDA raises RuntimeError: the
CPU is never used in its place. silu, gelu, exp and tanh have no CUDA kernel (NotImplementedError
for device arrays).

>>> import numpy as np, pylm
>>> x = np.array([[3.0, 4.0]], dtype=np.float32)
>>> pylm.ops.rmsnorm(x, eps=0.0)  # x / sqrt((9 + 16) / 2)
array([[0.84852815, 1.1313709 ]], dtype=float32)
>>> pylm.ops.softmax(np.array([2.0, 2.0, -np.inf], dtype=np.float32))  # -inf: a masked entry
array([0.5, 0.5, 0. ], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from .. import _core
from ..cuda._ext import is_device_array


def _cuda_ops():
    from ..cuda import ops

    return ops


def _host_only(name: str, x) -> None:
    if is_device_array(x):
        raise NotImplementedError(
            f"{name}: no CUDA kernel for device arrays (the fused swiglu/geglu are; "
            "or copy to the host explicitly)"
        )

__all__ = ["exp", "geglu", "gelu", "rmsnorm", "rope", "silu", "softmax", "swiglu", "tanh"]

ROPE_MODES = {"normal": 0, "neox": 2}


def rmsnorm(x, weight=None, eps: float = 1e-6, threads: int = 0, out=None, stream=None):
    """RMSNorm over the last axis: ``x / sqrt(mean(x**2, -1) + eps) * weight``.

    Args:
        x: float32 array of any rank >= 1, shape (..., C).
        weight: float32 (C,) or None. Gemma's GGUF already stores ``1 + w``: pass it as is.
        eps: added to the mean square (>= 0).
        out: optional float32 array of x's shape to write into; ``out=x`` normalizes in place.
        stream: CUDA stream for device arrays (ignored on the CPU).
    Returns:
        The normalized array (``out`` when given).
    """
    if is_device_array(x):
        return _cuda_ops().rmsnorm(x, weight, eps, out=out, stream=stream)
    return _core.rmsnorm(x, weight, float(eps), int(threads), out)


def rope(
    x,
    positions,
    base: float = 10000.0,
    mode: str = "normal",
    n_dims: int | None = None,
    freq_scale: float = 1.0,
    inplace: bool = False,
    threads: int = 0,
    stream=None,
):
    """Rotary position embedding of x (T, H, D) at integer positions (T,).

    Channel pair i of the first ``n_dims`` channels of every head is rotated by
    ``theta_i = positions[t] * base**(-2i / n_dims) * freq_scale`` (angles in double precision);
    channels ``[n_dims, D)`` pass through unchanged.

    Args:
        mode: "normal" (llama.cpp ROPE_TYPE_NORM: pairs (x[2i], x[2i+1]), llama/SmolLM GGUFs)
            or "neox" (ROPE_TYPE_NEOX: pairs (x[i], x[i + n_dims/2]), Gemma/Qwen GGUFs).
        n_dims: rotated channels per head, even, <= D (default: D).
        inplace: rotate x itself (and return it) instead of a copy. On the GPU an in-place x may
            be a strided view with contiguous heads (e.g. q inside a fused qkv buffer).
    """
    if is_device_array(x):
        return _cuda_ops().rope(x, positions, base, mode, n_dims, freq_scale, inplace, stream)
    if mode not in ROPE_MODES:
        raise ValueError(f"rope: mode={mode!r} (expected 'normal' or 'neox')")
    pos = np.asarray(positions)
    if pos.dtype.kind not in "iu":
        raise ValueError(f"rope: positions must be integers, got dtype {pos.dtype}")
    if pos.size and (pos.min() < np.iinfo(np.int32).min or pos.max() > np.iinfo(np.int32).max):
        raise ValueError(f"rope: positions out of int32 range (min {pos.min()}, max {pos.max()})")
    pos = np.ascontiguousarray(pos, dtype=np.int32)
    nd = -1 if n_dims is None else int(n_dims)
    if n_dims is not None and nd <= 0:
        raise ValueError(f"rope: n_dims={n_dims} must be a positive even number")
    return _core.rope(
        x, pos, float(base), ROPE_MODES[mode], nd, float(freq_scale), bool(inplace), int(threads)
    )


def softmax(x, axis: int = -1, scale: float = 1.0, threads: int = 0, stream=None):
    """Numerically stable ``softmax(scale * x)`` over the last axis.

    -inf entries (masks) get probability 0; a row that is entirely -inf gives zeros.
    Only the last axis is supported (ValueError otherwise). The result is float32 (also on the
    GPU for float16/bfloat16 inputs).
    """
    if is_device_array(x):
        return _cuda_ops().softmax(x, axis, scale, stream=stream)
    ndim = np.ndim(x)
    if axis not in (-1, ndim - 1):
        raise ValueError(f"softmax: axis={axis} is not supported (only the last axis, -1)")
    return _core.softmax(x, float(scale), int(threads))


def silu(x, threads: int = 0) -> np.ndarray:
    """SiLU (swish): ``x * sigmoid(x)``."""
    _host_only("silu", x)
    return _core.silu(x, int(threads))


def gelu(x, approximate: str = "tanh", threads: int = 0) -> np.ndarray:
    """GELU. ``approximate="tanh"``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
    (ggml's gelu, HF gelu_pytorch_tanh); ``approximate="none"``: exact ``x * Phi(x)`` (erf).
    """
    _host_only("gelu", x)
    if approximate == "tanh":
        return _core.gelu(x, int(threads))
    if approximate == "none":
        return _core.gelu_erf(x, int(threads))
    raise ValueError(f"gelu: approximate={approximate!r} (expected 'tanh' or 'none')")


def swiglu(gate, up, threads: int = 0, out=None, stream=None):
    """SwiGLU: ``silu(gate) * up`` (gate and up of the same shape).

    On the GPU gate/up may be strided row views (the two halves of one [R, 2F] array) and
    ``out`` an array to write into; on the CPU ``out`` must be None.
    """
    if is_device_array(gate):
        return _cuda_ops().swiglu(gate, up, out=out, stream=stream)
    if out is not None:
        raise ValueError("swiglu: out= is only supported for device arrays")
    return _core.swiglu(gate, up, int(threads))


def geglu(gate, up, threads: int = 0, out=None, stream=None):
    """GeGLU with the tanh GELU (Gemma): ``gelu(gate) * up`` (``out``: as for swiglu)."""
    if is_device_array(gate):
        return _cuda_ops().geglu(gate, up, out=out, stream=stream)
    if out is not None:
        raise ValueError("geglu: out= is only supported for device arrays")
    return _core.geglu(gate, up, int(threads))


def exp(x, threads: int = 0) -> np.ndarray:
    """The kernels' vectorized exp (about 2 ulp; 0 below ~-103.9, inf above ~88.72)."""
    _host_only("exp", x)
    return _core.exp(x, int(threads))


def tanh(x, threads: int = 0) -> np.ndarray:
    """The kernels' vectorized tanh (e.g. for logit soft-capping)."""
    _host_only("tanh", x)
    return _core.tanh(x, int(threads))
