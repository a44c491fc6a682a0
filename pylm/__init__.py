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
    cuda_error (why CUDA is unusable, or None).
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
    }
    if cuda is not None:
        try:
            n = cuda.device_count()
            info["cuda_available"] = n > 0
            info["gpu_name"] = cuda.device_name(0) if n > 0 else None
            if n == 0:
                info["cuda_error"] = "no CUDA device found"
        except RuntimeError as e:
            info["cuda_error"] = str(e)
    return info


from . import ops  # noqa: E402,F401
from .tokenizer import StreamingDetokenizer, Tokenizer  # noqa: E402,F401
from .model import KVPoolExhausted, Model, Sequence, load  # noqa: E402,F401
