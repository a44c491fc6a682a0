"""Reads the tokenizer metadata of a GGUF file: the one place pylm.tokenizer touches GGUF.

Only the key/value section is parsed (tensor infos and data are not touched). String arrays
(262k tokens for Gemma 3) are read natively into a compact ``TokStringTable``, so loading a
vocabulary takes milliseconds; ``gguf.GGUFReader`` builds Python objects per element and takes
seconds to minutes on the same file.

Format reference: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

>>> meta = read_tokenizer_metadata("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
>>> meta["tokenizer.ggml.model"], len(meta["tokenizer.ggml.tokens"])  # doctest: +SKIP
('gpt2', 49152)
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

from .. import _core
from ..errors import GGUFFormatError, GGUFTruncatedError, GGUFUnsupportedError

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
          6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_STRING, _ARRAY = 8, 9
_KEEP_PREFIXES = ("tokenizer.", "general.architecture", "general.name")


def read_tokenizer_metadata(path: str | os.PathLike) -> dict:
    """The ``tokenizer.*`` keys (plus general.architecture/name) of the GGUF file at path.

    Returns a dict: strings as str, numbers as Python scalars, string arrays as
    ``pylm._core.TokStringTable`` (len, [i] -> bytes, .tolist()), numeric arrays as numpy arrays.
    Raises GGUFFormatError / GGUFTruncatedError naming the problem, OSError if unreadable.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise GGUFTruncatedError(f"{path}: {size} bytes is too short for a GGUF header")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _parse(mm, path)
    finally:
        mm.close()


def _parse(buf: mmap.mmap, path: str) -> dict:
    size = len(buf)
    magic, version, _n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
    if magic != b"GGUF":
        raise GGUFFormatError(f"{path}: bad magic {magic!r}, expected b'GGUF'")
    if version not in (2, 3):
        raise GGUFUnsupportedError(f"{path}: GGUF version {version} (supported: 2, 3)")
    off = 24
    out: dict = {}

    def need(n: int, what: str) -> None:
        if off + n > size:
            raise GGUFTruncatedError(f"{path}: {what} at offset {off} runs past the end ({size} bytes)")

    def read_str(what: str) -> str:
        nonlocal off
        need(8, what)
        (n,) = struct.unpack_from("<Q", buf, off)
        off += 8
        need(n, what)
        s = bytes(buf[off : off + n]).decode("utf-8", "surrogateescape")
        off += n
        return s

    for _ in range(n_kv):
        key = read_str("metadata key")
        need(4, f"type of {key!r}")
        (vtype,) = struct.unpack_from("<I", buf, off)
        off += 4
        keep = key.startswith(_KEEP_PREFIXES)
        if vtype == _STRING:
            value = read_str(f"value of {key!r}")
        elif vtype == _ARRAY:
            need(12, f"array header of {key!r}")
            atype, count = struct.unpack_from("<IQ", buf, off)
            off += 12
            if atype == _STRING:
                value, off = _core.tok_read_gguf_string_array(buf, off, count)
            elif atype in _NUMPY:
                dt = np.dtype(_NUMPY[atype])
                need(count * dt.itemsize, f"array {key!r}")
                value = np.frombuffer(buf, dt, count, off).copy() if keep else None
                off += count * dt.itemsize
            else:
                raise GGUFFormatError(f"{path}: key {key!r} is an array of unknown type {atype}")
        elif vtype in _SCALAR:
            fmt = _SCALAR[vtype]
            n = struct.calcsize(fmt)
            need(n, f"value of {key!r}")
            (value,) = struct.unpack_from(fmt, buf, off)
            off += n
        else:
            raise GGUFFormatError(f"{path}: key {key!r} has unknown value type {vtype}")
        if keep:
            out[key] = value
    return out
