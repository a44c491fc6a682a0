"""GGUF reader and writer: the header, metadata and tensor table parsed in pure Python; tensor
data left in a read-only mmap and handed out as zero-copy numpy views.

Format (https://github.com/ggerganov/ggml/blob/master/docs/gguf.md), little-endian, v2/v3:

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x   (key: string, value_type u32, value)
    tensor_count x (name: string, n_dims u32, ne[n_dims] u64, ggml_type u32, offset u64)
    padding to `general.alignment` (default 32) -> data_offset
    tensor data: tensor i at data_offset + offset_i, each offset a multiple of the alignment

    string = len u64 + UTF-8 bytes;  array = elem_type u32 + count u64 + count values

ggml's ne[] lists the fastest-varying dimension first; `TensorInfo.shape` is the numpy order
(reversed ne): token_embd.weight with ne=(576, 49152) has shape (49152, 576) = (V, C).

Metadata values become Python values: ints, floats, bools, str; arrays of numbers (uint8 ..
int64, float32/64) become 1-D numpy arrays (copies, native little-endian dtype), arrays of bools
and strings become lists, arrays of arrays become lists of those. Every count and length is
checked against the bytes left in the file before anything is read or allocated, so a corrupt
file raises a GGUFError subclass (pylm/errors.py) naming the bad value, never hangs or exhausts
memory.

>>> with GGUFFile("SmolLM2-135M-Instruct.Q4_1.gguf") as f:          # doctest: +SKIP
...     f.architecture, f.tensors["token_embd.weight"].shape, f.tensor_data("output_norm.weight")
('llama', (49152, 576), array([...], dtype=uint8))
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .errors import GGUFFormatError, GGUFTruncatedError, GGUFUnsupportedError

__all__ = ["GGUFFile", "GGUFValueType", "TensorInfo", "qtype_sizes", "write"]

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_ARRAY_NESTING = 8  # arrays of arrays deeper than this are rejected (recursion guard)
INT64_MAX = 2**63 - 1

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# value type id -> (struct format, numpy dtype) for fixed-size scalars
_SCALARS = {
    GGUFValueType.UINT8: ("<B", "<u1"),
    GGUFValueType.INT8: ("<b", "<i1"),
    GGUFValueType.UINT16: ("<H", "<u2"),
    GGUFValueType.INT16: ("<h", "<i2"),
    GGUFValueType.UINT32: ("<I", "<u4"),
    GGUFValueType.INT32: ("<i", "<i4"),
    GGUFValueType.FLOAT32: ("<f", "<f4"),
    GGUFValueType.BOOL: ("<B", "<u1"),
    GGUFValueType.UINT64: ("<Q", "<u8"),
    GGUFValueType.INT64: ("<q", "<i8"),
    GGUFValueType.FLOAT64: ("<d", "<f8"),
}
_SCALAR_STRUCTS = {vt: struct.Struct(fmt) for vt, (fmt, _) in _SCALARS.items()}
# smallest encoding of one value of each type: bounds counts before any loop runs
_MIN_SIZE = {vt: s.size for vt, s in _SCALAR_STRUCTS.items()}
_MIN_SIZE[GGUFValueType.STRING] = 8
_MIN_SIZE[GGUFValueType.ARRAY] = 12
_MIN_KV_SIZE = 8 + 4 + 1  # empty key, type, 1-byte value
_MIN_TENSOR_INFO_SIZE = 8 + 4 + 4 + 8  # empty name, n_dims=0, type, offset


def qtype_sizes(qtype: int) -> tuple[int, int]:
    """(block_size, type_size) of a ggml type id: Q4_K -> (256, 144), F32 -> (1, 4)."""
    return GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]


class TensorInfo(NamedTuple):
    """One entry of the tensor table.

    name; shape: numpy order (reversed ne); ne: ggml order (ne[0] = row length);
    qtype: type name ("Q4_K"); qtype_id: ggml type id; offset: absolute file offset of the
    data; nbytes: size of the data; n_elements: product of the shape.
    """

    name: str
    shape: tuple[int, ...]
    ne: tuple[int, ...]
    qtype: str
    qtype_id: int
    offset: int
    nbytes: int
    n_elements: int

    @property
    def dims(self) -> tuple[int, ...]:
        """ggml dims (alias of ne)."""
        return self.ne

    @property
    def block_size(self) -> int:
        return qtype_sizes(self.qtype_id)[0]

    @property
    def type_size(self) -> int:
        return qtype_sizes(self.qtype_id)[1]

    @property
    def row_nbytes(self) -> int:
        """Bytes of one row (ne[0] elements)."""
        bs, ts = qtype_sizes(self.qtype_id)
        return (self.ne[0] if self.ne else 1) // bs * ts


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; every error names the offset and what
    was being read."""

    def __init__(self, buf, size: int, path: str):
        self.buf, self.size, self.path, self.pos = buf, size, path, 0

    def left(self) -> int:
        return self.size - self.pos

    def truncated(self, what: str, need: int, at: int | None = None) -> GGUFTruncatedError:
        at = self.pos if at is None else at
        return GGUFTruncatedError(
            f"{self.path}: truncated at offset {at} reading {what}: need {need} bytes, "
            f"{max(self.size - at, 0)} left (file size {self.size})"
        )

    def unpack(self, st: struct.Struct, what: str):
        if st.size > self.size - self.pos:
            raise self.truncated(what, st.size)
        (v,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return v

    def u32(self, what: str) -> int:
        return self.unpack(_U32, what)

    def u64(self, what: str) -> int:
        return self.unpack(_U64, what)

    def count(self, what: str, min_item: int) -> int:
        """A u64 count of items of at least `min_item` bytes each, checked against the file."""
        at = self.pos
        n = self.u64(what)
        if n * min_item > self.size - self.pos:
            raise GGUFTruncatedError(
                f"{self.path}: {what} {n} at offset {at} needs at least {n * min_item} bytes, "
                f"only {self.size - self.pos} left in the file (size {self.size})"
            )
        return n

    def string(self, what: str) -> str:
        at = self.pos
        n = self.u64(f"{what} length")
        if n > self.size - self.pos:
            raise GGUFTruncatedError(
                f"{self.path}: {what} length {n} at offset {at} is larger than the "
                f"{self.size - self.pos} bytes left in the file (size {self.size})"
            )
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFFormatError(
                f"{self.path}: {what} at offset {at} is not valid UTF-8: {raw[:64]!r} ({e.reason})"
            ) from None

    def string_array(self, n: int, what: str) -> list[str]:
        # Hot loop (262k tokens for Gemma 3): locals only, one unpack + one slice per string.
        buf, size, pos = self.buf, self.size, self.pos
        unpack = _U64.unpack_from
        out = [""] * n
        for i in range(n):
            if pos + 8 > size:
                self.pos = pos
                raise self.truncated(f"{what}[{i}] length", 8)
            (ln,) = unpack(buf, pos)
            pos += 8
            end = pos + ln
            if end > size:
                raise GGUFTruncatedError(
                    f"{self.path}: {what}[{i}] length {ln} at offset {pos - 8} is larger than "
                    f"the {size - pos} bytes left in the file (size {size})"
                )
            try:
                out[i] = buf[pos:end].decode("utf-8")
            except UnicodeDecodeError as e:
                raise GGUFFormatError(
                    f"{self.path}: {what}[{i}] at offset {pos - 8} is not valid UTF-8: "
                    f"{buf[pos:min(end, pos + 64)]!r} ({e.reason})"
                ) from None
            pos = end
        self.pos = pos
        return out

    def value_type(self, what: str) -> GGUFValueType:
        at = self.pos
        t = self.u32(f"{what} type")
        try:
            return GGUFValueType(t)
        except ValueError:
            raise GGUFFormatError(
                f"{self.path}: unknown value type {t} for {what} at offset {at} "
                f"(known: 0..{max(GGUFValueType)})"
            ) from None

    def value(self, vt: GGUFValueType, what: str, depth: int = 0) -> Any:
        st = _SCALAR_STRUCTS.get(vt)
        if st is not None:
            v = self.unpack(st, what)
            if vt == GGUFValueType.BOOL:
                if v > 1:
                    raise GGUFFormatError(
                        f"{self.path}: bool {what} at offset {self.pos - 1} has value {v} (not 0/1)"
                    )
                return bool(v)
            return v
        if vt == GGUFValueType.STRING:
            return self.string(what)
        return self.array(what, depth)

    def array(self, what: str, depth: int) -> Any:
        if depth >= MAX_ARRAY_NESTING:
            raise GGUFFormatError(
                f"{self.path}: {what} at offset {self.pos} nests arrays deeper than "
                f"{MAX_ARRAY_NESTING} levels"
            )
        et = self.value_type(f"{what} element")
        n = self.count(f"{what} array length", _MIN_SIZE[et])
        if et in _SCALARS:
            dtype = np.dtype(_SCALARS[et][1])
            arr = np.frombuffer(self.buf, dtype, n, self.pos).astype(dtype.newbyteorder("="))
            self.pos += n * dtype.itemsize
            if et != GGUFValueType.BOOL:
                return arr
            if n and arr.max() > 1:
                bad = int(np.argmax(arr > 1))
                raise GGUFFormatError(
                    f"{self.path}: bool {what}[{bad}] has value {int(arr[bad])} (not 0/1)"
                )
            return arr.astype(bool).tolist()
        if et == GGUFValueType.STRING:
            return self.string_array(n, what)
        return [self.array(f"{what}[{i}]", depth + 1) for i in range(n)]


class GGUFFile:
    """A GGUF file opened read-only through mmap.

    Attributes: path, version, alignment, data_offset, file_size, metadata (dict key -> value,
    in file order), types (dict key -> tuple of GGUFValueType: (UINT32,) or (ARRAY, STRING)),
    tensors (dict name -> TensorInfo, in file order).

    Raises GGUFFormatError / GGUFTruncatedError / GGUFUnsupportedError (all GGUFError, a
    ValueError) for a bad file, OSError when it cannot be opened.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._mm = None
        with open(self.path, "rb") as fh:
            self.file_size = os.fstat(fh.fileno()).st_size
            if self.file_size < 4 + 4 + 8 + 8:
                raise GGUFTruncatedError(
                    f"{self.path}: file size {self.file_size} is smaller than the 24-byte "
                    f"GGUF header"
                )
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- parsing ---------------------------------------------------------------------------
    def _parse(self) -> None:
        cur = _Cursor(self._mm, self.file_size, str(self.path))
        magic = self._mm[:4]
        if magic != MAGIC:
            raise GGUFFormatError(
                f"{self.path}: bad magic {magic!r} (hex {magic.hex()}), expected {MAGIC!r}"
            )
        cur.pos = 4
        self.version = cur.u32("version")
        if self.version not in SUPPORTED_VERSIONS:
            swapped = int.from_bytes(self.version.to_bytes(4, "little"), "big")
            if swapped in SUPPORTED_VERSIONS:
                raise GGUFUnsupportedError(
                    f"{self.path}: big-endian GGUF (version field {self.version:#x}) is not "
                    f"supported"
                )
            raise GGUFUnsupportedError(
                f"{self.path}: GGUF version {self.version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        n_tensors = cur.u64("tensor_count")
        n_kv = cur.u64("kv_count")
        if n_kv * _MIN_KV_SIZE + n_tensors * _MIN_TENSOR_INFO_SIZE > cur.left():
            raise GGUFTruncatedError(
                f"{self.path}: tensor_count {n_tensors} and kv_count {n_kv} need at least "
                f"{n_kv * _MIN_KV_SIZE + n_tensors * _MIN_TENSOR_INFO_SIZE} bytes, only "
                f"{cur.left()} left in the file (size {self.file_size})"
            )
        self.metadata: dict[str, Any] = {}
        self.types: dict[str, tuple[GGUFValueType, ...]] = {}
        for i in range(n_kv):
            at = cur.pos
            key = cur.string(f"key of metadata entry {i}")
            if key in self.metadata:
                raise GGUFFormatError(f"{self.path}: duplicate metadata key {key!r} at offset {at}")
            vt = cur.value_type(f"metadata {key!r}")
            start = cur.pos
            self.metadata[key] = cur.value(vt, f"metadata {key!r}")
            if vt == GGUFValueType.ARRAY:  # parsed fine, so the element type is valid
                self.types[key] = (vt, GGUFValueType(_U32.unpack_from(self._mm, start)[0]))
            else:
                self.types[key] = (vt,)
        self.alignment = self._read_alignment()
        self.tensors: dict[str, TensorInfo] = {}
        rel_offsets = [self._read_tensor_info(cur, i) for i in range(n_tensors)]
        self.data_offset = -(-cur.pos // self.alignment) * self.alignment
        self._place_tensors(rel_offsets)

    def _read_alignment(self) -> int:
        a = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if isinstance(a, bool) or not isinstance(a, int):
            raise GGUFFormatError(
                f"{self.path}: general.alignment must be an integer, got {a!r} "
                f"({'/'.join(t.name for t in self.types['general.alignment'])})"
            )
        if a <= 0 or a & (a - 1):
            raise GGUFFormatError(f"{self.path}: general.alignment {a} is not a power of two")
        return a

    def _read_tensor_info(self, cur: _Cursor, i: int) -> int:
        at = cur.pos
        name = cur.string(f"name of tensor {i}")
        if name in self.tensors:
            raise GGUFFormatError(f"{self.path}: duplicate tensor name {name!r} at offset {at}")
        n_dims = cur.u32(f"n_dims of tensor {name!r}")
        if n_dims > MAX_DIMS:
            raise GGUFFormatError(
                f"{self.path}: tensor {name!r} has n_dims {n_dims} (at most {MAX_DIMS})"
            )
        ne = tuple(cur.u64(f"ne[{d}] of tensor {name!r}") for d in range(n_dims))
        n_elements = 1
        for d, n in enumerate(ne):
            if n == 0 or n > INT64_MAX:
                raise GGUFFormatError(
                    f"{self.path}: tensor {name!r} has ne[{d}] = {n} (ne {list(ne)}); "
                    f"dims must be in 1..{INT64_MAX}"
                )
            n_elements *= n
        if n_elements > INT64_MAX:
            raise GGUFFormatError(
                f"{self.path}: tensor {name!r} with ne {list(ne)} has {n_elements} elements, "
                f"overflowing int64"
            )
        type_id = cur.u32(f"type of tensor {name!r}")
        try:
            qt = GGMLQuantizationType(type_id)
            block_size, type_size = GGML_QUANT_SIZES[qt]
        except (ValueError, KeyError):
            raise GGUFUnsupportedError(
                f"{self.path}: tensor {name!r} has unknown ggml type id {type_id}"
            ) from None
        row = ne[0] if ne else 1
        if row % block_size:
            raise GGUFFormatError(
                f"{self.path}: tensor {name!r} ({qt.name}, ne {list(ne)}): row length {row} is "
                f"not a multiple of the block size {block_size}"
            )
        rel = cur.u64(f"offset of tensor {name!r}")
        self.tensors[name] = TensorInfo(
            name, tuple(reversed(ne)), ne, qt.name, int(qt), -1,
            n_elements // block_size * type_size, n_elements,
        )
        return rel

    def _place_tensors(self, rel_offsets: list[int]) -> None:
        for (name, ti), rel in zip(list(self.tensors.items()), rel_offsets):
            if rel % self.alignment:
                raise GGUFFormatError(
                    f"{self.path}: tensor {name!r} offset {rel} is not a multiple of the "
                    f"alignment {self.alignment}"
                )
            start = self.data_offset + rel
            if start + ti.nbytes > self.file_size:
                raise GGUFTruncatedError(
                    f"{self.path}: tensor {name!r} data [{start}, {start + ti.nbytes}) "
                    f"(offset {rel} + data_offset {self.data_offset}, {ti.nbytes} bytes) is "
                    f"beyond the file size {self.file_size}"
                )
            self.tensors[name] = ti._replace(offset=start)
        spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in self.tensors.values())
        for (s0, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise GGUFFormatError(
                    f"{self.path}: tensors {n0!r} [{s0}, {e0}) and {n1!r} (from {s1}) overlap"
                )

    # -- access ----------------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def _info(self, name: str) -> TensorInfo:
        if self._mm is None:
            raise ValueError(f"{self.path}: GGUF file is closed")
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"no tensor {name!r} in {self.path}") from None

    def tensor_data(self, name: str) -> np.ndarray:
        """Raw bytes of tensor `name`: a read-only uint8 view of the mmap, shape (nbytes,)."""
        ti = self._info(name)
        return np.frombuffer(self._mm, np.uint8, ti.nbytes, ti.offset)

    def tensor(self, name: str) -> np.ndarray:
        """Tensor `name` as a read-only typed view: F32/F16/F64/I8..I64 -> that dtype with
        `shape`; BF16 -> uint16 bits with `shape`; block-quantized types -> uint8 of shape
        (*shape[:-1], row_nbytes)."""
        ti = self._info(name)
        dt = _PLAIN_DTYPES.get(ti.qtype)
        if dt is not None:
            return np.frombuffer(self._mm, dt, ti.n_elements, ti.offset).reshape(ti.shape)
        rows = ti.shape[:-1] if ti.shape else ()
        return self.tensor_data(name).reshape(*rows, ti.row_nbytes)

    def close(self) -> None:
        """Release the mmap. Views from tensor_data() keep it alive until they are gone."""
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # numpy views still export the buffer; the mmap closes when they die

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"GGUFFile({str(self.path)!r}, version={self.version}, arch={self.architecture!r}, "
            f"{len(self.metadata)} keys, {len(self.tensors)} tensors)"
        )


_PLAIN_DTYPES = {
    "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"), "BF16": np.dtype("<u2"),
    "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
}

from .gguf_write import write  # noqa: E402
