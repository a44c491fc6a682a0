"""`pylm quantize IN.gguf OUT.gguf TYPE`: rewrite a model with its weight matrices requantized.

2-D weight matrices (name ends with ".weight", not a norm, row length a multiple of the
block size) are dequantized with pylm.ops.dequantize and quantized to TYPE with
pylm.ops.quantize; every other tensor is copied byte for byte, and all metadata is kept
(general.file_type is updated). Tensor order and names are preserved. Like llama.cpp, a
K-quant target falls back to a 32-block type for rows that are not a multiple of 256
(Q4_K -> Q5_0, Q6_K -> Q8_0).

    pylm quantize SmolLM2-135M-Instruct.Q4_1.gguf smollm2-q8_0.gguf Q8_0
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ALLOWED_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q6_K"]
_K_FALLBACK = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}
_FILE_TYPES = {  # gguf.LlamaFileType values
    "F32": 0,
    "F16": 1,
    "BF16": 32,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q8_0": 7,
    "Q5_0": 8,
    "Q5_1": 9,
    "Q4_K": 14,
    "Q6_K": 18,  # Q4_K: MOSTLY_Q4_K_S (every matrix Q4_K)
}
_CHUNK_ELEMS = 1 << 24  # requantize big matrices in row chunks of ~64 MiB of float32


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="requantize a GGUF model's weight matrices",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("input", help="source .gguf")
    p.add_argument("output", help="destination .gguf (written atomically)")
    p.add_argument(
        "type",
        type=str.upper,
        choices=ALLOWED_TYPES,
        metavar="TYPE",
        help="target type: " + ", ".join(ALLOWED_TYPES),
    )
    p.add_argument("--threads", type=int, default=0, help="native threads (0 = default)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run)


def _run(args) -> int:
    stats = quantize_model(
        args.input, args.output, args.type, threads=args.threads, progress=not args.quiet
    )
    if not args.quiet:
        print(
            f"{args.output}: {stats['requantized']} tensors -> {args.type}, "
            f"{stats['copied']} copied, {stats['bytes_in'] / 1e6:.1f} MB -> "
            f"{stats['bytes_out'] / 1e6:.1f} MB",
            file=sys.stderr,
        )
    return 0


def _target_type(name: str, ggml_shape, src_type: str, qtype: str, ops) -> str | None:
    """The type a tensor becomes, or None to copy it unchanged."""
    if not name.endswith(".weight") or len(ggml_shape) != 2 or "norm" in name:
        return None
    if src_type not in ops.QTYPES:
        return None
    row = int(ggml_shape[0])  # ggml ne0: the contiguous row
    target = qtype
    if row % ops.qtype_info(target)["block_size"]:
        target = _K_FALLBACK.get(target)
        if target is None or row % ops.qtype_info(target)["block_size"]:
            return None
    return None if target == src_type else target


def _copy_fields(reader, writer, file_type: int) -> None:
    """Copies every metadata key (except the reader's GGUF.* pseudo-keys) in file order."""
    from gguf import GGUFValueType

    have_file_type = False
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # the writer writes the header and the architecture itself
        vtype = field.types[0]
        if key == "general.alignment":
            writer.add_custom_alignment(int(field.contents()))
            continue
        if key == "general.file_type":
            writer.add_key_value(key, file_type, vtype)
            have_file_type = True
            continue
        if vtype == GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == GGUFValueType.STRING:  # raw bytes: exact even for non-UTF-8 tokens
                val = [bytes(field.parts[i]) for i in field.data]
            elif sub == GGUFValueType.ARRAY:
                raise ValueError(f"metadata key {key!r}: nested arrays are not supported")
            else:
                val = field.contents()
            if not val:
                continue  # gguf cannot write empty arrays
            writer.add_key_value(key, val, vtype, sub_type=sub)
        elif vtype == GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[-1]), vtype)
        else:
            writer.add_key_value(key, field.contents(), vtype)
    if not have_file_type:
        writer.add_key_value("general.file_type", file_type, GGUFValueType.UINT32)


def _requantize(data: np.ndarray, src: str, dst: str, shape, out_nbytes: int, threads: int, ops):
    """Dequantize + quantize `data` (the stored bytes of a (rows, cols) tensor) in row chunks."""
    rows, cols = shape
    raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8).reshape(rows, -1)
    out = np.empty((rows, out_nbytes // rows), dtype=np.uint8)
    step = max(1, _CHUNK_ELEMS // max(cols, 1))
    for r in range(0, rows, step):
        e = min(rows, r + step)
        x = ops.dequantize(raw[r:e], src, (e - r, cols), threads=threads)
        out[r:e] = ops.quantize(x, dst, threads=threads)
    return out


def quantize_model(src_path, dst_path, qtype: str, threads: int = 0, progress: bool = True) -> dict:
    """Writes `dst_path`: `src_path` with its weight matrices requantized to `qtype`.

    Returns {requantized, copied, bytes_in, bytes_out}. Raises ValueError for a bad type or
    when source and destination are the same file.
    """
    import gguf

    from .. import ops

    qtype = qtype.upper()
    if qtype not in ALLOWED_TYPES:
        raise ValueError(
            f"unsupported target type {qtype!r}; expected one of {', '.join(ALLOWED_TYPES)}"
        )
    src_path, dst_path = Path(src_path), Path(dst_path)
    if dst_path.exists() and dst_path.resolve() == src_path.resolve():
        raise ValueError(f"output {dst_path} is the input file; choose another path")
    reader = gguf.GGUFReader(src_path)
    arch_field = reader.get_field("general.architecture")
    arch = arch_field.contents() if arch_field is not None else "llama"

    plans = []  # (tensor, numpy shape, source type name, target type name or None, out bytes)
    for t in reader.tensors:
        src_type = t.tensor_type.name
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        target = _target_type(t.name, t.shape.tolist(), src_type, qtype, ops)
        if target is None:
            plans.append((t, shape, src_type, None, int(t.n_bytes)))
        else:
            info = ops.qtype_info(target)
            n = int(np.prod(shape))
            plans.append((t, shape, src_type, target, n // info["block_size"] * info["type_size"]))

    tmp_path = dst_path.with_name(dst_path.name + ".tmp")
    writer = gguf.GGUFWriter(tmp_path, arch)
    try:
        _copy_fields(reader, writer, _FILE_TYPES[qtype])
        for t, shape, src_type, target, nbytes in plans:
            raw_type = gguf.GGMLQuantizationType[target] if target else t.tensor_type
            writer.add_tensor_info(t.name, shape, np.dtype(np.float32), nbytes, raw_dtype=raw_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        bar = _progress(len(plans), progress)
        for t, shape, src_type, target, nbytes in plans:
            if target is None:
                data = t.data
            else:
                data = _requantize(t.data, src_type, target, shape, nbytes, threads, ops)
            writer.write_tensor_data(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
            bar(t.name, target or "copy")
        writer.close()
        os.replace(tmp_path, dst_path)
    except BaseException:
        writer.close()
        tmp_path.unlink(missing_ok=True)
        raise
    n_req = sum(1 for p in plans if p[3] is not None)
    return {
        "requantized": n_req,
        "copied": len(plans) - n_req,
        "bytes_in": sum(int(p[0].n_bytes) for p in plans),
        "bytes_out": sum(p[4] for p in plans),
    }


def _progress(total: int, enabled: bool):
    """A callback(name, what) that advances a tqdm bar on stderr (plain lines without tqdm)."""
    if not enabled:
        return lambda name, what: None
    try:
        from tqdm import tqdm
    except ImportError:
        count = [0]

        def plain(name, what):
            count[0] += 1
            print(f"[{count[0]}/{total}] {name}: {what}", file=sys.stderr)

        return plain
    bar = tqdm(total=total, unit="tensor", file=sys.stderr, desc="quantize")

    def step(name, what):
        bar.set_postfix_str(f"{name}: {what}", refresh=False)
        bar.update(1)
        if bar.n >= total:
            bar.close()

    return step
