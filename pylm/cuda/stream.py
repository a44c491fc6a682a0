"""Which CUDA stream pylm's GPU calls run on.

Resolution order for every ``pylm.cuda`` / ``pylm.ops`` call on device arrays:

1. an explicit ``stream=`` argument: an integer ``cudaStream_t`` or an object with
   ``.cuda_stream`` (torch.cuda.Stream) or ``.ptr`` (cupy.cuda.Stream);
2. the innermost ``pylm.cuda.use_stream(s)`` block in this thread;
3. the current stream of the library that owns the arrays: ``torch.cuda.current_stream()``
   for torch tensors, ``cupy.cuda.get_current_stream()`` for cupy arrays — so pylm ops queue
   behind the caller's own work without extra synchronization;
4. pylm's default: 0, CUDA's legacy default stream (it orders against every blocking stream).

All launches are asynchronous on that stream; ``Array.numpy()`` and ``synchronize()`` wait.

>>> from pylm.cuda.stream import resolve_stream
>>> resolve_stream(123)
123
"""

from __future__ import annotations

import contextlib
import threading

_local = threading.local()


def stream_handle(stream) -> int:
    """The integer cudaStream_t of an int, torch.cuda.Stream or cupy.cuda.Stream."""
    if isinstance(stream, int):
        if stream < 0:
            raise ValueError(f"stream={stream} must be a cudaStream_t value >= 0")
        return stream
    for attr in ("cuda_stream", "ptr"):
        v = getattr(stream, attr, None)
        if isinstance(v, int):
            return v
    raise ValueError(f"stream: expected an int or a torch/cupy stream, got {type(stream).__name__}")


@contextlib.contextmanager
def use_stream(stream):
    """Run pylm's GPU calls in this thread on ``stream`` (see the module docstring)."""
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(stream_handle(stream))
    try:
        yield
    finally:
        stack.pop()


def _library_stream(arrays) -> int | None:
    for a in arrays:
        mod = type(a).__module__ or ""
        if mod.startswith("torch"):
            import torch

            return int(torch.cuda.current_stream(a.device).cuda_stream)
        if mod.startswith("cupy"):
            import cupy

            return int(cupy.cuda.get_current_stream().ptr)
    return None


def resolve_stream(stream=None, *arrays) -> int:
    """The stream a call on ``arrays`` runs on, as an integer (order: module docstring)."""
    if stream is not None:
        return stream_handle(stream)
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    s = _library_stream(arrays)
    return 0 if s is None else s
