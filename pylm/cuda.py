"""The CUDA side of pylm, when it was built with CUDA.

Functions here raise RuntimeError when CUDA was not built or no device is usable: a GPU that was
asked for is never silently replaced by the CPU.

>>> import pylm.cuda
>>> pylm.cuda.is_available() in (True, False)
True
"""

from __future__ import annotations

import numpy as np


def _module():
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError as e:
        raise RuntimeError("pylm was built without CUDA (no nvcc at build time)") from e
    return _cuda


def is_built() -> bool:
    try:
        _module()
    except RuntimeError:
        return False
    return True


def is_available() -> bool:
    """True when the CUDA extension is built and at least one device is usable."""
    if not is_built():
        return False
    try:
        return _module().device_count() > 0
    except RuntimeError:
        return False


def device_count() -> int:
    return _module().device_count()


def device_name(device: int = 0) -> str:
    return _module().device_name(device)


def dequantize(raw: np.ndarray, qtype: str, shape, device: int = 0) -> np.ndarray:
    """Dequantize GGUF tensor bytes on the GPU; host arrays in and out.

    Same contract as ``pylm.ops.dequantize`` (bit-exact with it). Supported: F16, BF16, Q4_0,
    Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K.
    """
    return _module().dequantize(np.ascontiguousarray(raw), qtype, [int(s) for s in shape], device)
