"""The CUDA side of pylm, when it was built with CUDA.

Functions here raise RuntimeError when CUDA was not built or no device is usable: a GPU that was
asked for is never silently replaced by the CPU.

- ``Array``: pylm's own device array (``array.py``), for users without torch or cupy.
- ``ops``: rmsnorm, rope, softmax, swiglu, geglu, embedding, add, dequantize on device arrays
  (``pylm.ops.*`` dispatches there for device inputs).
- streams: ``use_stream``, ``resolve_stream`` (``stream.py``: which stream calls run on).
- ``device_info()``: compute capability, memory, driver/runtime versions.

>>> import pylm.cuda
>>> pylm.cuda.is_available() in (True, False)
True
"""

from __future__ import annotations

import numpy as np

from . import ops
from ._ext import is_device_array, module
from .array import Array, empty, zeros
from .stream import resolve_stream, use_stream

__all__ = [
    "Array", "dequantize", "device_count", "device_info", "device_name", "empty",
    "is_available", "is_built", "is_device_array", "ops", "resolve_stream", "synchronize",
    "use_stream", "zeros",
]

_module = module  # older name, kept for callers


def is_built() -> bool:
    """True when pylm was compiled with its CUDA extension."""
    try:
        module()
    except RuntimeError:
        return False
    return True


def is_available() -> bool:
    """True when the CUDA extension is built and at least one device is usable."""
    if not is_built():
        return False
    try:
        return module().device_count() > 0
    except RuntimeError:
        return False


def device_count() -> int:
    return module().device_count()


def device_name(device: int = 0) -> str:
    return module().device_name(device)


def _version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def device_info(device: int = 0) -> dict:
    """``{name, compute_capability: "9.0", total_memory, free_memory, multiprocessor_count,
    l2_cache_size, driver_version: "12.8", runtime_version: "13.0"}`` of one device."""
    m = module()
    p = dict(m.device_properties(device))
    free, total = m.mem_get_info(device)
    major, minor = p.pop("compute_capability")
    return {
        **p,
        "compute_capability": f"{major}.{minor}",
        "total_memory": total,
        "free_memory": free,
        "driver_version": _version(m.driver_version()),
        "runtime_version": _version(m.runtime_version()),
    }


def synchronize(device: int = 0) -> None:
    """Wait for all work on the device."""
    module().synchronize(device)


def dequantize(raw, qtype: str, shape, device: int = 0, dtype="float32", stream=None):
    """Dequantize GGUF tensor bytes on the GPU.

    Host bytes (numpy) in -> float32 numpy out, bit-exact with ``pylm.ops.dequantize``; device
    bytes in -> a device array of ``dtype`` (float32 or float16), see ``ops.dequantize``.
    Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
    """
    if is_device_array(raw):
        return ops.dequantize(raw, qtype, shape, dtype=dtype, stream=stream)
    return module().dequantize(np.ascontiguousarray(raw), qtype, [int(s) for s in shape], device)
