"""pylm.cuda.Array: a minimal CUDA device array for users without torch or cupy.

Memory comes from ``cudaMalloc`` (never managed memory) and is freed with ``cudaFree`` when the
last Array (or view, or DLPack consumer) referring to it goes away. Arrays are C-contiguous.
They speak both exchange protocols, so torch/cupy/jax/numba can use them without a copy:
``__cuda_array_interface__`` (v3, with the stream of pending writes) and ``__dlpack__`` /
``__dlpack_device__`` (DLPack 0.8 or 1.0 capsules).

dtypes: float32, float16, bfloat16, int32, uint8. numpy has no bfloat16: ``from_numpy`` takes
either float arrays (rounded to bfloat16, nearest-even) or uint16 arrays holding the raw bfloat16
bits; ``numpy()`` returns float32 (exact) by default, or the uint16 bits with ``bf16="bits"``.

>>> import pylm.cuda
>>> if pylm.cuda.is_available():
...     a = pylm.cuda.Array.from_numpy(np.ones((2, 3), np.float32))
...     assert a.shape == (2, 3) and a.numpy().sum() == 6
"""

from __future__ import annotations

import math

import numpy as np

from ._ext import module
from .stream import resolve_stream

#: name -> (numpy storage dtype, CAI typestr)
DTYPES = {
    "float32": (np.dtype(np.float32), "<f4"),
    "float16": (np.dtype(np.float16), "<f2"),
    "bfloat16": (np.dtype(np.uint16), "<V2"),
    "int32": (np.dtype(np.int32), "<i4"),
    "uint8": (np.dtype(np.uint8), "|u1"),
}
_FROM_NUMPY = {"float32": "float32", "float64": "float32", "float16": "float16",
               "int32": "int32", "int64": "int32", "uint8": "uint8"}


def dtype_name(dtype) -> str:
    """Normalize a dtype given as a name, numpy dtype, or torch dtype to pylm's name."""
    name = str(dtype).replace("torch.", "")
    if name not in DTYPES:
        raise ValueError(f"dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    return name


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, ((u >> 16) | np.uint32(0x40)).astype(np.uint16), r)


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exact."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _shape(shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape {shape} has a negative dimension")
    return shape


class Array:
    """A C-contiguous array in device memory: ``Array(shape, dtype="float32", device=0)``.

    The contents of a new Array are uninitialized (see ``zeros``).
    """

    def __init__(self, shape, dtype="float32", device: int = 0):
        self.shape = _shape(shape)
        self.dtype = dtype_name(dtype)
        nbytes = math.prod(self.shape) * DTYPES[self.dtype][0].itemsize
        self._buf = module().DeviceBuffer(nbytes, int(device))
        self._offset = 0
        self._stream: int | None = None  # stream with pending writes; None: none pending

    # ---- construction ----
    @classmethod
    def zeros(cls, shape, dtype="float32", device: int = 0, stream=None) -> Array:
        a = cls(shape, dtype, device)
        s = resolve_stream(stream)
        module().memset(a.ptr, 0, a.nbytes, s)
        a._stream = s
        return a

    @classmethod
    def from_numpy(cls, a, dtype=None, device: int = 0, stream=None) -> Array:
        """Copy a host array to the device (returns when the copy is done).

        dtype defaults to a's (float64 -> float32, int64 -> int32). For ``dtype="bfloat16"``,
        a uint16 array is taken as raw bfloat16 bits, anything else is rounded from float32.
        """
        a = np.asarray(a)
        if dtype is None:
            if a.dtype.name not in _FROM_NUMPY:
                raise ValueError(f"from_numpy: no device dtype for numpy {a.dtype}; pass dtype=")
            dtype = _FROM_NUMPY[a.dtype.name]
        dtype = dtype_name(dtype)
        if dtype == "bfloat16":
            host = a if a.dtype == np.uint16 else f32_to_bf16_bits(a)
            host = np.ascontiguousarray(host, dtype=np.uint16)
        else:
            host = np.ascontiguousarray(a, dtype=DTYPES[dtype][0])
        out = cls(host.shape, dtype, device)
        if out.nbytes:
            module().memcpy_htod(out.ptr, host, out.nbytes, resolve_stream(stream))
        return out

    def numpy(self, bf16: str = "float32", stream=None) -> np.ndarray:
        """Copy to a new host array after the pending work on the array's stream.

        bf16: "float32" (exact widening) or "bits" (uint16) for bfloat16 arrays.
        """
        if bf16 not in ("float32", "bits"):
            raise ValueError(f"bf16={bf16!r} (expected 'float32' or 'bits')")
        host = np.empty(self.shape, DTYPES[self.dtype][0])
        s = resolve_stream(stream) if stream is not None or self._stream is None else self._stream
        if self.nbytes:
            module().memcpy_dtoh(host, self.ptr, self.nbytes, s)
        if self.dtype == "bfloat16" and bf16 == "float32":
            return bf16_bits_to_f32(host)
        return host

    def reshape(self, *shape) -> Array:
        """A view of the same memory with another shape (same number of elements)."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        shape = list(shape)
        if shape.count(-1) == 1:
            rest = math.prod(s for s in shape if s != -1)
            shape[shape.index(-1)] = self.size // rest if rest else 0
        shape = _shape(shape)
        if math.prod(shape) != self.size:
            raise ValueError(f"reshape: cannot view {self.shape} as {shape}")
        v = object.__new__(Array)
        v.shape, v.dtype, v._buf, v._offset, v._stream = (
            shape, self.dtype, self._buf, self._offset, self._stream)
        return v

    # ---- properties ----
    @property
    def ptr(self) -> int:
        return self._buf.ptr + self._offset

    @property
    def device(self) -> int:
        return self._buf.device

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype][0].itemsize

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d Array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"pylm.cuda.Array(shape={self.shape}, dtype={self.dtype}, device={self.device})"

    # ---- exchange protocols ----
    @property
    def __cuda_array_interface__(self) -> dict:
        s = self._stream
        return {
            "shape": self.shape,
            "typestr": DTYPES[self.dtype][1],
            "data": (self.ptr, False),
            "version": 3,
            "strides": None,
            # CAI v3: 1 = legacy default stream (0 is not allowed); None = nothing pending.
            "stream": None if s is None else (1 if s == 0 else s),
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, self.device)  # kDLCUDA

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack capsule (1.0 when the consumer passes max_version >= (1, 0), else 0.8).

        ``stream``: the consumer's stream (None = legacy default, -1 = no synchronization);
        pending writes on the array's stream are ordered before it.
        """
        if copy:
            raise BufferError("pylm.cuda.Array.__dlpack__: copy=True is not supported")
        if dl_device is not None and tuple(int(v) for v in dl_device) != (2, self.device):
            raise BufferError(f"pylm.cuda.Array.__dlpack__: cannot export to device {dl_device}")
        if stream != -1 and self._stream is not None:
            module().stream_wait(1 if stream is None else int(stream), self._stream)
        strides = [math.prod(self.shape[i + 1:]) for i in range(self.ndim)]
        versioned = max_version is not None and int(max_version[0]) >= 1
        return module().dlpack_capsule(self, self.ptr, self.dtype, list(self.shape), strides,
                                       self.device, versioned)


def empty(shape, dtype="float32", device: int = 0) -> Array:
    """An uninitialized device Array."""
    return Array(shape, dtype, device)


def zeros(shape, dtype="float32", device: int = 0, stream=None) -> Array:
    """A device Array of zeros."""
    return Array.zeros(shape, dtype, device, stream)
