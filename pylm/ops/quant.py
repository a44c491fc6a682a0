"""GGUF tensor formats: dequantize stored bytes to float32, quantize float32 to blocks.

Dequantization is bit-exact with ``gguf.quants.dequantize`` on every ISA; quantization to the
legacy formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and F16/BF16 is bit-exact with
``gguf.quants.quantize``; K-quants follow llama.cpp's reference quantizers.

>>> import numpy as np, pylm
>>> x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
>>> q = pylm.ops.quantize(x, "Q8_0")
>>> q.shape, q.dtype
((2, 34), dtype('uint8'))
>>> float(np.abs(pylm.ops.dequantize(q, "Q8_0", x.shape) - x).max()) < 0.01
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import _core
from ..cuda._ext import is_device_array

__all__ = ["QTYPES", "QUANTIZE_TYPES", "dequantize", "qtype_info", "quantize"]

#: Tensor types ``dequantize`` reads, in ggml id order (F32, F16, Q4_0, ..., Q8_K, BF16).
QTYPES: list[str] = list(_core.qtypes())
#: Tensor types ``quantize`` writes.
QUANTIZE_TYPES: list[str] = list(_core.quantize_types())


def _qtype_arg(qtype):
    """Accepts a name ("Q4_K", any case), a ggml id, or a gguf.GGMLQuantizationType."""
    if isinstance(qtype, (str, int)):
        return qtype
    name = getattr(qtype, "name", None)
    if isinstance(name, str):
        return name
    raise ValueError(f"qtype must be a type name or id, got {qtype!r}")


def qtype_info(name) -> dict:
    """``{name, id, block_size, type_size}`` of a GGUF tensor type.

    >>> qtype_info("q4_k")
    {'name': 'Q4_K', 'id': 12, 'block_size': 256, 'type_size': 144}
    """
    return dict(_core.qtype_info(_qtype_arg(name)))


def dequantize(raw, qtype, shape: Sequence[int], threads: int = 0, *, dtype="float32",
               out=None, stream=None):
    """Decode a tensor's stored bytes into float32.

    Bytes in device memory (a torch/cupy CUDA array, pylm.cuda.Array, ...) are decoded by the
    CUDA kernels into a new device array (``dtype`` float32, bit-exact with the CPU, or float16;
    ``out``/``stream`` as in ``pylm.cuda.ops``); RuntimeError when CUDA is unavailable. dtype,
    out and stream apply to device bytes only.

    Args:
      raw: the tensor's bytes exactly as stored in the GGUF, any shape, C-contiguous; uint8
        (other dtypes, e.g. the float32/float16 views GGUFReader gives for F32/F16 tensors,
        are reinterpreted as their bytes). Size must be prod(shape) / block_size * type_size.
      qtype: type name ("Q4_K"), ggml id, or gguf.GGMLQuantizationType.
      shape: numpy shape of the result; shape[-1] (the contiguous row) must be a multiple of
        the block size.
      threads: native threads (0 = the global default).

    Returns:
      float32 array of ``shape``.

    Raises:
      ValueError: unknown qtype, byte count mismatch, row length not a multiple of the block.
    """
    if is_device_array(raw):
        from ..cuda import ops as cuda_ops

        return cuda_ops.dequantize(raw, _qtype_arg(qtype), shape, dtype=dtype, out=out,
                                   stream=stream)
    if out is not None or dtype not in ("float32", np.float32):
        raise ValueError("dequantize: out= and dtype= apply to device bytes only")
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 and raw.flags.c_contiguous:
        raw = raw.reshape(-1).view(np.uint8)
    shape = tuple(
        int(s) for s in (shape if isinstance(shape, (tuple, list)) else np.atleast_1d(shape))
    )
    return _core.dequantize(raw, _qtype_arg(qtype), shape, int(threads))


def quantize(x: np.ndarray, qtype, threads: int = 0) -> np.ndarray:
    """Encode float32 rows into a GGUF tensor type.

    Args:
      x: float array of shape (..., K) (converted to contiguous float32), K a multiple of the
        type's block size.
      qtype: one of ``QUANTIZE_TYPES`` (name, ggml id or gguf.GGMLQuantizationType).
      threads: native threads (0 = the global default).

    Returns:
      uint8 array of shape (..., K // block_size * type_size): the bytes as stored in GGUF
      (the shape of ``gguf.quants.quantize``'s output; for F16/BF16/F32 the raw bytes).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    return _core.quantize(x, _qtype_arg(qtype), int(threads))
