"""Device-array plumbing shared by the ops that dispatch to pylm._cuda (private).

A "device array" is anything exposing ``__cuda_array_interface__`` (cupy, numba, ...) or a CUDA
torch tensor. torch refuses ``__cuda_array_interface__`` for bfloat16, so torch tensors are
handed to the extension through a small view that describes them (typestr ``<V2`` = bfloat16,
as cuda/interop.cpp reads it).
"""

from __future__ import annotations

_TORCH_TYPESTR = {
    "torch.float32": "<f4",
    "torch.float16": "<f2",
    "torch.bfloat16": "<V2",
    "torch.int32": "<i4",
    "torch.uint8": "|u1",
}


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def is_device(x) -> bool:
    """True for a CUDA torch tensor or any object with ``__cuda_array_interface__``."""
    if _is_torch(x):
        return bool(getattr(x, "is_cuda", False))
    try:
        return hasattr(x, "__cuda_array_interface__")
    except (TypeError, RuntimeError, ValueError):  # some raise these for host arrays
        return False


class _TorchView:
    """``__cuda_array_interface__`` of a CUDA torch tensor, bfloat16 included."""

    def __init__(self, t, name: str):
        typestr = _TORCH_TYPESTR.get(str(t.dtype))
        if typestr is None:
            raise ValueError(f"{name}: unsupported device dtype {t.dtype}")
        es = t.element_size()
        self.__cuda_array_interface__ = {
            "shape": tuple(int(s) for s in t.shape),
            "typestr": typestr,
            "data": (int(t.data_ptr()), False),
            "strides": tuple(int(s) * es for s in t.stride()),
            "version": 3,
        }


def view(x, name: str):
    """What pylm._cuda accepts for device array ``x`` (ValueError naming ``name`` otherwise)."""
    if not is_device(x):
        raise ValueError(f"{name}: expected a CUDA device array, got {type(x).__name__}")
    return _TorchView(x, name) if _is_torch(x) else x


def stream_of(x, stream) -> int:
    """The stream to run on: ``stream`` when given, else the current stream of x's library."""
    if stream is not None:
        return int(stream)
    if _is_torch(x):
        import torch

        return int(torch.cuda.current_stream(x.device).cuda_stream)
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    return 0


def empty_like_lib(x, shape, dtype: str):
    """A new device array of ``shape`` and ``dtype`` ("float32", "float16", "bfloat16") on x's
    device, from x's library (torch or cupy)."""
    if _is_torch(x):
        import torch

        return torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=x.device)
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy

        if dtype == "bfloat16":
            raise ValueError("out: cupy has no bfloat16; pass out= explicitly")
        with cupy.cuda.Device(x.device.id):
            return cupy.empty(tuple(shape), dtype=dtype)
    raise ValueError(
        f"out: cannot allocate a result next to a {type(x).__name__}; pass out= explicitly"
    )


def dtype_name(x) -> str:
    """"float32" / "float16" / "bfloat16" / ... of a device array."""
    if _is_torch(x):
        return str(x.dtype).replace("torch.", "")
    ts = x.__cuda_array_interface__["typestr"]
    return {"<f4": "float32", "<f2": "float16", "<V2": "bfloat16"}.get(ts, ts)
