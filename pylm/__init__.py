"""pylm: a small LLM engine for Python.

GGUF models on the CPU (SIMD kernels chosen at run time) and on NVIDIA GPUs (CUDA kernels).

>>> import pylm
>>> pylm.backend_info()["isa"] in pylm.available_isas()
True
"""

from __future__ import annotations

import contextlib
import os

from . import _core
from .errors import (  # noqa: F401
    GGUFError,
    GGUFFormatError,
    GGUFTruncatedError,
    GGUFUnsupportedError,
    PylmError,
)

__version__ = _core.__version__

# Resolve the ISA now, so a bad PYLM_FORCE_ISA fails at import with a message naming it.
_core.active_isa()


def available_isas() -> list[str]:
    """ISAs this CPU can run, from slowest to fastest, e.g. ['scalar', 'avx2', 'avx512']."""
    return list(_core.available_isas())


def active_isa() -> str:
    """The ISA the CPU kernels use now."""
    return _core.active_isa()


def set_isa(name: str) -> None:
    """Force the kernels' ISA for this process. RuntimeError if the CPU cannot run it."""
    _core.set_isa(name)


@contextlib.contextmanager
def use_isa(name: str):
    """Context manager: run the enclosed code with ISA `name`, then restore the previous one."""
    prev = _core.active_isa()
    _core.set_isa(name)
    try:
        yield
    finally:
        _core.set_isa(prev)


def set_threads(n: int) -> None:
    """Set the default number of threads for native calls."""
    _core.set_threads(int(n))


def get_threads() -> int:
    return _core.get_threads()


def _cuda_module():
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _cuda


def backend_info() -> dict:
    """What this pylm build can use: version, ISAs, threads, CUDA.

    Returns a dict with keys: version, isa, isas_available, threads, hardware_threads,
    force_isa (the PYLM_FORCE_ISA value or None), cuda_built, cuda_available, gpu_name,
    cuda_error (why CUDA is unusable, or None), and for GPU 0 (None when unknown):
    gpu_count, gpu_compute_capability ("9.0"), gpu_memory_total / gpu_memory_free (bytes),
    gpu_multiprocessors, cuda_driver_version ("12.8": the installed driver's CUDA version),
    cuda_runtime_version ("13.0": the runtime pylm was built with).
    """
    cuda = _cuda_module()
    info = {
        "version": __version__,
        "isa": _core.active_isa(),
        "isas_available": available_isas(),
        "threads": _core.get_threads(),
        "hardware_threads": _core.hardware_threads(),
        "force_isa": os.environ.get("PYLM_FORCE_ISA") or None,
        "cuda_built": cuda is not None,
        "cuda_available": False,
        "gpu_name": None,
        "cuda_error": None if cuda is not None else "pylm was built without CUDA",
        "gpu_count": 0,
        "gpu_compute_capability": None,
        "gpu_memory_total": None,
        "gpu_memory_free": None,
        "gpu_multiprocessors": None,
        "cuda_driver_version": None,
        "cuda_runtime_version": None,
    }
    if cuda is not None:
        from .cuda import device_info

        try:
            info["cuda_runtime_version"] = _cuda_version(cuda.runtime_version())
            info["cuda_driver_version"] = _cuda_version(cuda.driver_version()) or None
            n = cuda.device_count()
            info["gpu_count"] = n
            info["cuda_available"] = n > 0
            if n == 0:
                info["cuda_error"] = "no CUDA device found"
            else:
                d = device_info(0)
                info["gpu_name"] = d["name"]
                info["gpu_compute_capability"] = d["compute_capability"]
                info["gpu_memory_total"] = d["total_memory"]
                info["gpu_memory_free"] = d["free_memory"]
                info["gpu_multiprocessors"] = d["multiprocessor_count"]
        except RuntimeError as e:
            info["cuda_error"] = str(e)
    return info


def _cuda_version(v: int) -> str:
    """12080 -> "12.8" (CUDA's integer version encoding); 0 -> ""."""
    return f"{v // 1000}.{(v % 1000) // 10}" if v else ""


from . import ops  # noqa: E402,F401
from .tokenizer import StreamingDetokenizer, Tokenizer  # noqa: E402,F401
from .model import KVPoolExhausted, Model, Sequence, load  # noqa: E402,F401
from .sampling import SamplingParams  # noqa: E402,F401
from .generation import GenerationResult  # noqa: E402,F401
