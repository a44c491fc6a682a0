"""Access to the compiled CUDA extension, and the "does this live on a GPU" test."""

from __future__ import annotations

import numpy as np

_DL_CUDA, _DL_CUDA_MANAGED = 2, 13  # DLPack device types


def module():
    """The pylm._cuda extension; RuntimeError when pylm was built without CUDA."""
    try:
        from .. import _cuda  # type: ignore[attr-defined]
    except ImportError as e:
        raise RuntimeError("pylm was built without CUDA (no nvcc at build time)") from e
    return _cuda


def is_device_array(x) -> bool:
    """True when x is an array in CUDA device memory.

    That is: ``__dlpack_device__()`` reports a CUDA device (torch, cupy, jax, pylm.cuda.Array),
    or, for objects without DLPack (numba), ``__cuda_array_interface__`` can be read. numpy
    arrays, CPU torch tensors and Python sequences are host data (False).
    """
    if type(x) is np.ndarray or isinstance(x, (list, tuple, int, float)) or x is None:
        return False
    dev = getattr(type(x), "__dlpack_device__", None)
    if dev is not None:
        try:
            dev_type = int(x.__dlpack_device__()[0])
        except Exception:  # noqa: BLE001 - a producer that cannot say is not a device array
            dev_type = None
        if dev_type is not None:
            return dev_type in (_DL_CUDA, _DL_CUDA_MANAGED)
    try:
        return isinstance(x.__cuda_array_interface__, dict)
    except Exception:  # noqa: BLE001 - torch raises for CPU tensors (AttributeError/RuntimeError)
        return False
