"""Small ops on device arrays: the CUDA side of ``pylm.ops`` (which dispatches here for arrays
that live on a GPU; see pylm/ops/nn.py). Inputs: torch/cupy/jax arrays, numba device arrays or
pylm.cuda.Array (``__cuda_array_interface__`` or DLPack); float32, float16 or bfloat16 storage,
fp32 math. Results are new arrays of the input's library (torch in -> torch out, cupy -> cupy;
anything else, and bfloat16 from cupy, -> pylm.cuda.Array), or the ``out=`` array you pass.
Every call is asynchronous on the stream chosen by ``pylm.cuda.stream.resolve_stream``.

Small index inputs (rope positions, embedding ids) may be host arrays: they are uploaded.
Host *data* is never moved implicitly: mixing a numpy ``x`` with a device ``weight`` fails.
"""

from __future__ import annotations

import numpy as np

from ._ext import is_device_array, module
from .array import Array, dtype_name
from .stream import resolve_stream

__all__ = ["add", "dequantize", "embedding", "geglu", "rmsnorm", "rope", "softmax", "swiglu"]

_ROPE_NEOX = {"normal": False, "neox": True}


def describe(x) -> dict:
    """What the extension reads from a device array: ptr, dtype, shape, strides, device, ..."""
    return module()._describe(x)


def _device_of(x, info) -> int:
    if info["device"] >= 0:
        return info["device"]
    dev = getattr(x, "device", None)
    for attr in ("index", "id"):
        v = getattr(dev, attr, None)
        if isinstance(v, int):
            return v
    return dev if isinstance(dev, int) else 0


def _empty_like(ref, shape, dtype: str):
    """A new device array of ref's library (else a pylm.cuda.Array) on ref's device."""
    mod = type(ref).__module__ or ""
    if mod.startswith("torch"):
        import torch

        return torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=ref.device)
    if mod.startswith("cupy") and dtype != "bfloat16":
        import cupy

        with ref.device:
            return cupy.empty(tuple(shape), dtype=dtype)
    return Array(shape, dtype, _device_of(ref, describe(ref)))


def _mark(out, stream: int):
    if isinstance(out, Array):
        out._stream = stream
    return out


def _index_array(a, name: str, like):
    """Device int32 array for small index inputs; host arrays/lists are uploaded."""
    if is_device_array(a):
        return a
    h = np.asarray(a)
    if h.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {h.dtype}")
    if h.size and (h.min() < np.iinfo(np.int32).min or h.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{name} out of int32 range (min {h.min()}, max {h.max()})")
    return Array.from_numpy(h.astype(np.int32), "int32", _device_of(like, describe(like)))


def rmsnorm(x, weight=None, eps: float = 1e-6, out=None, stream=None):
    """``x / sqrt(mean(x**2, -1) + eps) * weight`` over the last axis; weight float32 (C,)."""
    info = describe(x)
    s = resolve_stream(stream, x)
    if out is None:
        out = _empty_like(x, info["shape"], info["dtype"])
    module().rmsnorm(x, weight, out, float(eps), s)
    return _mark(out, s)


def rope(x, positions, base: float = 10000.0, mode: str = "normal", n_dims: int | None = None,
         freq_scale: float = 1.0, inplace: bool = False, stream=None):
    """Rotary embedding of x (T, H, D) at positions (T,); same contract as ``pylm.ops.rope``.

    With inplace=True x may be a strided view whose heads are contiguous (e.g. the q part of a
    fused qkv buffer); otherwise x must be contiguous and a rotated copy is returned.
    """
    if mode not in _ROPE_NEOX:
        raise ValueError(f"rope: mode={mode!r} (expected 'normal' or 'neox')")
    if n_dims is not None and int(n_dims) <= 0:
        raise ValueError(f"rope: n_dims={n_dims} must be a positive even number")
    info = describe(x)
    s = resolve_stream(stream, x)
    pos = _index_array(positions, "rope: positions", x)
    if not inplace:
        if not info["contiguous"]:
            raise ValueError("rope: a strided x needs inplace=True (or a contiguous copy)")
        y = _empty_like(x, info["shape"], info["dtype"])
        nbytes = int(np.prod(info["shape"])) * _ITEMSIZE[info["dtype"]]
        module().memcpy_dtod(describe(y)["ptr"], info["ptr"], nbytes, s)
        x = y
    module().rope(x, pos, float(base), _ROPE_NEOX[mode], -1 if n_dims is None else int(n_dims),
                  float(freq_scale), s)
    return _mark(x, s)


def softmax(x, axis: int = -1, scale: float = 1.0, out=None, stream=None):
    """float32 ``softmax(scale * x)`` over the last axis (-inf entries get 0)."""
    info = describe(x)
    if axis not in (-1, len(info["shape"]) - 1):
        raise ValueError(f"softmax: axis={axis} is not supported (only the last axis, -1)")
    s = resolve_stream(stream, x)
    if out is None:
        out = _empty_like(x, info["shape"], "float32")
    module().softmax(x, out, float(scale), s)
    return _mark(out, s)


def _glu(fn, gate, up, out, stream):
    info = describe(gate)
    s = resolve_stream(stream, gate)
    if out is None:
        out = _empty_like(gate, info["shape"], info["dtype"])
    fn(gate, up, out, s)
    return _mark(out, s)


def swiglu(gate, up, out=None, stream=None):
    """``silu(gate) * up``; gate and up may be strided row views (halves of one [R, 2F])."""
    return _glu(module().swiglu, gate, up, out, stream)


def geglu(gate, up, out=None, stream=None):
    """``gelu_tanh(gate) * up`` (Gemma)."""
    return _glu(module().geglu, gate, up, out, stream)


def add(a, b, out=None, stream=None):
    """``a + b`` (same shape and dtype); ``out=a`` adds in place (residual)."""
    info = describe(a)
    s = resolve_stream(stream, a)
    if out is None:
        out = _empty_like(a, info["shape"], info["dtype"])
    module().add(a, b, out, s)
    return _mark(out, s)


def _qtype_arg(qtype):
    # pylm.ops.quant's parser; imported here because pylm.ops.quant imports pylm.cuda
    from ..ops.quant import _qtype_arg as parse

    return parse(qtype)


def embedding(table, ids, qtype, n_embd: int | None = None, scale: float = 1.0,
              dtype="float32", out=None, check_ids: bool = True, stream=None):
    """Rows ``ids`` of a GGUF embedding table (its stored bytes, on the device) times scale.

    Args:
        table: device array of the tensor's bytes (any dtype, contiguous), V rows.
        ids: int token ids, any shape (host ids are uploaded).
        qtype: GGUF type of the table (name, id or gguf.GGMLQuantizationType).
        n_embd: values per row (default: inferred from a 2-D table's row size in bytes).
        dtype: result dtype (float32, float16, bfloat16).
        check_ids: copy ids to the host and raise IndexError for ids outside [0, V) (a sync).
    Returns:
        array of shape ids.shape + (n_embd,).
    """
    from ..ops.quant import qtype_info

    q = _qtype_arg(qtype)
    tinfo = describe(table)
    if n_embd is None:
        if len(tinfo["shape"]) != 2:
            raise ValueError(f"embedding: pass n_embd for a table of shape {tinfo['shape']}")
        qi = qtype_info(q)
        row_bytes = tinfo["shape"][1] * _ITEMSIZE[tinfo["dtype"]]
        if row_bytes % qi["type_size"]:
            raise ValueError(f"embedding: rows of {row_bytes} bytes are not whole {qi['name']} blocks")
        n_embd = row_bytes // qi["type_size"] * qi["block_size"]
    dev_ids = _index_array(ids, "embedding: ids", table)
    s = resolve_stream(stream, table, ids)
    if out is None:
        out = _empty_like(table, tuple(describe(dev_ids)["shape"]) + (int(n_embd),),
                          dtype_name(dtype))
    module().embedding(table, q, dev_ids, out, float(scale), bool(check_ids), s)
    return _mark(out, s)


def dequantize(raw, qtype, shape, dtype="float32", out=None, stream=None):
    """Decode GGUF bytes that live on the device into a float32 (or float16) device array."""
    q = _qtype_arg(qtype)
    s = resolve_stream(stream, raw)
    if out is None:
        shape = tuple(int(v) for v in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        out = _empty_like(raw, shape, dtype_name(dtype))
    module().dequantize_into(raw, q, out, s)
    return _mark(out, s)


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "uint8": 1}
