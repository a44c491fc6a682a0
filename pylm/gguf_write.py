"""GGUF writer: pylm.gguf.write(path, metadata, tensors), built on gguf.GGUFWriter.

Metadata value types come from the Python value (the GGUF conventions llama.cpp expects):
    bool -> BOOL; int -> INT32 (INT64 / UINT64 when out of range); float -> FLOAT32; str -> STRING;
    numpy scalars -> their own type (np.uint32(8) -> UINT32, np.float64 -> FLOAT64);
    1-D numpy arrays -> ARRAY of their dtype (bool arrays -> ARRAY of BOOL, str arrays -> STRING);
    lists / tuples -> ARRAY, element type inferred from the items as above (all ints -> INT32 or
    wider, any float -> FLOAT32), lists of lists -> nested arrays. Empty lists have no element
    type: pass an empty numpy array of the wanted dtype instead.
    `general.alignment` is written as UINT32 and sets the data alignment.

Tensors: name -> ndarray (float32 -> F32, float16 -> F16, float64 -> F64, int8..int64 -> I8..I64)
or name -> (ndarray, qtype) with qtype a name ("Q4_K"), id or GGMLQuantizationType; for a
block-quantized qtype the array is either the raw uint8 blocks, shape (*shape[:-1], row_bytes)
as gguf.quants.quantize returns them, or float values that are quantized with gguf.quants.

>>> write("tiny.gguf", {"general.architecture": "llama", "llama.block_count": np.uint32(1)},
...       {"w": np.zeros((2, 32), np.float32), "q": (np.ones((4, 64), np.float32), "Q8_0")})
...                                                                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter
from gguf import quants as gguf_quants
from gguf.constants import GGMLQuantizationType, GGUFValueType

VT = GGUFValueType
_DTYPE_TO_VT = {
    np.dtype("uint8"): VT.UINT8, np.dtype("int8"): VT.INT8,
    np.dtype("uint16"): VT.UINT16, np.dtype("int16"): VT.INT16,
    np.dtype("uint32"): VT.UINT32, np.dtype("int32"): VT.INT32,
    np.dtype("uint64"): VT.UINT64, np.dtype("int64"): VT.INT64,
    np.dtype("float32"): VT.FLOAT32, np.dtype("float64"): VT.FLOAT64,
    np.dtype("bool"): VT.BOOL,
}
_VT_TO_DTYPE = {vt: dt.newbyteorder("<") for dt, vt in _DTYPE_TO_VT.items()}
_PLAIN_QTYPES = {
    GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
    GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
    GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
}


def _int_type(v: int, key: str) -> GGUFValueType:
    if -(2**31) <= v < 2**31:
        return VT.INT32
    if -(2**63) <= v < 2**63:
        return VT.INT64
    if 0 <= v < 2**64:
        return VT.UINT64
    raise ValueError(f"gguf write: metadata {key!r}: integer {v} does not fit in 64 bits")


def _scalar_type(v: Any, key: str) -> GGUFValueType | None:
    if isinstance(v, (bool, np.bool_)):
        return VT.BOOL
    if isinstance(v, np.generic):
        vt = _DTYPE_TO_VT.get(v.dtype)
        if vt is None:
            raise ValueError(f"gguf write: metadata {key!r}: numpy type {v.dtype} has no GGUF type")
        return vt
    if isinstance(v, int):
        return _int_type(v, key)
    if isinstance(v, float):
        return VT.FLOAT32
    if isinstance(v, str):
        return VT.STRING
    return None


def _encode(v: Any, key: str) -> tuple[GGUFValueType, Any]:
    """Python value -> (value type, payload); an array payload is (element type, items) with
    items a little-endian ndarray (numbers, bools), a list of str, or a list of array payloads."""
    vt = _scalar_type(v, key)
    if vt is not None:
        return vt, (v.item() if isinstance(v, np.generic) else v)
    if isinstance(v, np.ndarray):
        if v.ndim != 1:
            raise ValueError(
                f"gguf write: metadata {key!r}: arrays must be 1-D, got shape {v.shape}")
        if v.dtype.kind == "U":
            return VT.ARRAY, (VT.STRING, v.tolist())
        et = _DTYPE_TO_VT.get(v.dtype.newbyteorder("="))
        if et is None:
            raise ValueError(f"gguf write: metadata {key!r}: dtype {v.dtype} has no GGUF type")
        return VT.ARRAY, (et, np.ascontiguousarray(v, _VT_TO_DTYPE[et]))
    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError(
                f"gguf write: metadata {key!r}: an empty list has no element type; "
                f"pass an empty numpy array (e.g. np.array([], np.int32))"
            )
        if all(isinstance(x, (list, tuple, np.ndarray)) for x in v):
            return VT.ARRAY, (VT.ARRAY, [_encode(x, key)[1] for x in v])
        types = {_scalar_type(x, key) for x in v}
        if None in types:
            raise ValueError(f"gguf write: metadata {key!r}: unsupported item in {v!r:.80}")
        if types == {VT.STRING}:
            return VT.ARRAY, (VT.STRING, list(v))
        if types == {VT.BOOL}:
            return VT.ARRAY, (VT.BOOL, np.array(v, np.bool_))
        if VT.STRING in types or VT.BOOL in types:
            raise ValueError(f"gguf write: metadata {key!r}: mixed item types {sorted(types)}")
        if all(not isinstance(x, np.generic) for x in v):  # plain Python numbers
            if VT.FLOAT32 in types:
                et = VT.FLOAT32
            else:
                lo, hi = min(v), max(v)
                if lo < 0 and hi >= 2**63:
                    raise ValueError(f"gguf write: metadata {key!r}: ints {lo}..{hi} "
                                     f"fit no single GGUF integer type")
                order = [VT.INT32, VT.INT64, VT.UINT64]
                et = max(_int_type(lo, key), _int_type(hi, key), key=order.index)
        elif len(types) == 1:
            (et,) = types
        else:
            raise ValueError(f"gguf write: metadata {key!r}: mixed numpy item types {types}")
        return VT.ARRAY, (et, np.array([x.item() if isinstance(x, np.generic) else x for x in v],
                                       _VT_TO_DTYPE[et]))
    raise ValueError(
        f"gguf write: metadata {key!r}: unsupported value {v!r:.80} ({type(v).__name__})")


class _Writer(GGUFWriter):
    """GGUFWriter whose arrays take our (element type, items) payloads: numpy items are written
    in one tobytes() (262k-entry vocab arrays), and empty arrays are allowed."""

    def _pack_val(self, val, vtype, add_vtype, sub_type=None) -> bytes:
        if vtype != VT.ARRAY:
            return super()._pack_val(val, vtype, add_vtype)
        et, items = val
        out = bytearray(self._pack("I", vtype) if add_vtype else b"")
        out += self._pack("I", et) + self._pack("Q", len(items))
        if isinstance(items, np.ndarray):
            out += items.astype(items.dtype.newbyteorder("<"), copy=False).tobytes()
        else:
            for item in items:
                out += self._pack_val(item, et, add_vtype=False)
        return bytes(out)


def _qtype(q) -> GGMLQuantizationType:
    try:
        if isinstance(q, str):
            return GGMLQuantizationType[q.upper()]
        return GGMLQuantizationType(int(q))
    except (KeyError, ValueError):
        raise ValueError(f"gguf write: unknown tensor type {q!r}") from None


def _tensor(name: str, value) -> tuple[np.ndarray, GGMLQuantizationType | None]:
    arr, qt = value if isinstance(value, tuple) else (value, None)
    arr = np.asarray(arr)
    if qt is None:
        return np.ascontiguousarray(arr), None
    qt = _qtype(qt)
    plain = _PLAIN_QTYPES.get(qt)
    if plain is not None:
        return np.ascontiguousarray(arr, plain), None
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr), qt
    if arr.dtype.kind != "f":
        raise ValueError(f"gguf write: tensor {name!r}: {qt.name} needs uint8 blocks or floats, "
                         f"got dtype {arr.dtype}")
    try:
        return gguf_quants.quantize(arr.astype(np.float32), qt), qt
    except (NotImplementedError, gguf_quants.QuantError) as e:
        raise ValueError(
            f"gguf write: tensor {name!r}: cannot quantize to {qt.name}: {e}") from None


def write(path: str | os.PathLike, metadata: dict[str, Any],
          tensors: dict[str, Any] | None = None, *, arch: str | None = None) -> Path:
    """Write a GGUF v3 file atomically (temp file + rename) and return its path.

    Args:
        path: output file.
        metadata: key -> value (types: see the module docstring). `general.architecture`
            comes first in the file; `arch` overrides it.
        tensors: name -> ndarray or (ndarray, qtype), written in dict order.
        arch: the architecture, when metadata has no `general.architecture`.
    """
    path = Path(path)
    arch = arch or metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"gguf write: need an architecture (arch= or general.architecture), "
                         f"got {arch!r}")
    tmp = path.with_name(path.name + ".tmp")
    w = _Writer(tmp, arch)
    try:
        for key, v in metadata.items():
            if key == "general.architecture":
                continue
            if key == "general.alignment":
                a = int(v)
                if a <= 0 or a & (a - 1):
                    raise ValueError(f"gguf write: general.alignment {a} is not a power of two")
                w.data_alignment = a
                w.add_key_value(key, a, VT.UINT32)
                continue
            vt, payload = _encode(v, key)
            w.add_key_value(key, payload, vt)
        for name, value in (tensors or {}).items():
            arr, qt = _tensor(name, value)
            w.add_tensor(name, arr, raw_dtype=qt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return path
