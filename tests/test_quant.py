"""GGUF formats: pylm.ops.dequantize / quantize against gguf-py's numpy code (bit-exact).

Dequantization runs on every ISA (fixture `isa`); quantization is scalar. K-quant
quantizers have no gguf-py counterpart: they are checked by reconstruction error and by
gguf-py dequantizing our bytes to exactly what our dequantize returns.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGUFReader
from gguf import GGMLQuantizationType as GT
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

import pylm
from pylm.ops import QTYPES, QUANTIZE_TYPES, dequantize, qtype_info, quantize

# Types gguf-py can dequantize (the bit-exact oracle).
GGUF_TYPES = [
    "F32",
    "F16",
    "BF16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
]
LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# Byte offsets of the fp16 scale fields inside one block.
SCALE_OFFSETS = {
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q8_0": [0],
    "Q2_K": [80, 82],
    "Q3_K": [108],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}


def assert_same_f32(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """Bit-identical float32 arrays, except that any NaN matches any NaN."""
    want = np.asarray(want, dtype=np.float32).reshape(got.shape)
    assert got.dtype == np.float32
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), f"{what}: NaN positions differ"
    gb, wb = got.view(np.uint32)[~nan_g], want.view(np.uint32)[~nan_w]
    bad = np.flatnonzero(gb != wb)
    assert bad.size == 0, (
        f"{what}: {bad.size} values differ, first at {bad[0]}: "
        f"{got[~nan_g][bad[0]]!r} vs {want[~nan_w][bad[0]]!r}"
    )


def random_blocks(qtype: str, nblocks: int, rng, sane: bool = True) -> np.ndarray:
    """nblocks random blocks; with sane=True every fp16 scale is a finite value (some zero,
    some negative) so results are finite; otherwise raw random bytes (NaN/inf scales)."""
    info = qtype_info(qtype)
    raw = rng.integers(0, 256, size=(nblocks, info["type_size"]), dtype=np.uint8)
    if sane and qtype in SCALE_OFFSETS:
        for off in SCALE_OFFSETS[qtype]:
            d = (rng.standard_normal(nblocks) * 0.05).astype(np.float16)
            d[::7] = 0
            d[3::11] = -np.abs(d[3::11])
            d[5::13] = np.float16(6.0e-8)  # fp16 subnormal
            raw[:, off : off + 2] = d.view(np.uint8).reshape(nblocks, 2)
    return raw


def as_rows(raw_blocks: np.ndarray, qtype: str, nrows: int):
    """Reshape blocks into GGUF's (rows, row_bytes) layout; returns (raw, numpy shape)."""
    info = qtype_info(qtype)
    raw = raw_blocks.reshape(nrows, -1)
    return raw, (nrows, raw.shape[1] // info["type_size"] * info["block_size"])


# ---------------------------------------------------------------- dequantize vs gguf-py


@pytest.mark.parametrize("qtype", GGUF_TYPES)
def test_dequantize_random_blocks(isa, qtype):
    rng = np.random.default_rng(GT[qtype].value)
    bs = qtype_info(qtype)["block_size"]
    nblocks = 3 * (2048 // bs) if bs > 1 else 3 * 1000  # 3 rows; F16 rows of 1000 test tails
    raw, shape = as_rows(random_blocks(qtype, nblocks, rng), qtype, 3)
    got = dequantize(raw, qtype, shape)
    assert got.shape == shape
    assert np.isfinite(got).all() or qtype in ("F32", "F16", "BF16")
    with np.errstate(all="ignore"):
        want = gguf_dequantize(raw, GT[qtype])
    assert_same_f32(got, want, f"{qtype}/{isa}")


@pytest.mark.parametrize("qtype", GGUF_TYPES)
def test_dequantize_raw_random_bytes(isa, qtype):
    """Arbitrary bytes: NaN/inf/subnormal scales must give the same values and NaN positions."""
    rng = np.random.default_rng(7 + GT[qtype].value)
    bs = qtype_info(qtype)["block_size"]
    raw, shape = as_rows(
        random_blocks(qtype, 2 * (1024 // bs) if bs > 1 else 2 * 517, rng, sane=False), qtype, 2
    )
    with np.errstate(all="ignore"):
        want = gguf_dequantize(raw, GT[qtype])
    assert_same_f32(dequantize(raw, qtype, shape), want, f"{qtype}/{isa}")


@pytest.mark.parametrize("qtype", ["Q8_K", "Q8_1"])
def test_dequantize_q8_K_q8_1(isa, qtype):
    """Activation formats (no gguf-py decoder): y = d * q with d float32 (Q8_K) or fp16 (Q8_1)."""
    rng = np.random.default_rng(3)
    info = qtype_info(qtype)
    raw = rng.integers(0, 256, size=(40, info["type_size"]), dtype=np.uint8)
    if qtype == "Q8_K":
        d = (rng.standard_normal(40) * 0.01).astype(np.float32)
        raw[:, :4] = d.view(np.uint8).reshape(40, 4)
        q = raw[:, 4:260].view(np.int8)
    else:
        d = (rng.standard_normal(40) * 0.01).astype(np.float16)
        raw[:, :2] = d.view(np.uint8).reshape(40, 2)
        q = raw[:, 4:].view(np.int8)
    want = d.astype(np.float32)[:, None] * q.astype(np.float32)
    got = dequantize(raw.reshape(-1), qtype, (40 * info["block_size"],))
    assert_same_f32(got, want, qtype)


def test_dequantize_threads_and_shapes(isa):
    rng = np.random.default_rng(11)
    raw, shape = as_rows(random_blocks("Q4_K", 4 * 64, rng), "Q4_K", 4)
    one = dequantize(raw, "Q4_K", shape, threads=1)
    assert_same_f32(dequantize(raw, "Q4_K", shape, threads=3), one, "threads")
    # Any numpy shape with the same last dim; raw given flat.
    got3 = dequantize(raw.reshape(-1), "Q4_K", (2, 2, shape[1]))
    assert_same_f32(got3.reshape(shape), one, "3-D")
    # Enum and id spellings of the type.
    assert_same_f32(dequantize(raw, GT.Q4_K, shape), one, "enum")
    assert_same_f32(dequantize(raw, 12, shape), one, "id")
    # F32 stored as float32 (as GGUFReader returns it) is taken as its bytes.
    x = rng.standard_normal((3, 5)).astype(np.float32)
    assert_same_f32(dequantize(x, "F32", x.shape), x, "F32")
    assert dequantize(np.zeros(0, np.uint8), "Q8_0", (0, 32)).shape == (0, 32)


def test_dequantize_errors():
    raw = np.zeros(34, np.uint8)
    with pytest.raises(ValueError, match="Q9_X"):
        dequantize(raw, "Q9_X", (32,))
    with pytest.raises(ValueError, match=r"34 bytes.*68"):
        dequantize(raw, "Q8_0", (64,))
    with pytest.raises(ValueError, match="row length 48"):
        dequantize(np.zeros(51, np.uint8), "Q8_0", (48,))
    with pytest.raises(ValueError, match="contiguous"):
        dequantize(np.zeros((34, 2), np.uint8)[:, 0], "Q8_0", (32,))
    with pytest.raises(ValueError, match="threads"):
        dequantize(raw, "Q8_0", (32,), threads=-1)


# ---------------------------------------------------------------- real models


def _rows_subset(t, max_elems: int):
    """The first and last rows of a tensor (bytes, numpy shape) capped at ~max_elems values."""
    shape = tuple(int(s) for s in reversed(t.shape.tolist()))
    data = t.data
    if len(shape) < 2 or np.prod(shape) <= max_elems:
        return data, shape
    rows2d = data.reshape(-1, data.shape[-1])
    per_row = int(np.prod(shape)) // rows2d.shape[0]
    k = max(1, max_elems // per_row // 2)
    sub = np.concatenate([rows2d[:k], rows2d[-k:]])
    return sub, (2 * k, per_row)


@functools.cache
def _reader(path) -> GGUFReader:
    # GGUFReader parses every metadata field (gemma's 262k-token vocab: seconds); parse once.
    return GGUFReader(path)


def _check_model(path, isa, max_elems):
    reader = _reader(path)
    seen = set()
    for t in reader.tensors:
        data, shape = _rows_subset(t, max_elems)
        got = dequantize(data, t.tensor_type, shape)
        want = gguf_dequantize(np.asarray(data), t.tensor_type)
        assert_same_f32(got, want, f"{t.name} ({t.tensor_type.name}, {isa})")
        seen.add(t.tensor_type.name)
    return seen


def test_real_model_tensors_every_isa(real_model_path, isa):
    """Every tensor of each real model (first/last rows of the big ones) on every ISA."""
    seen = _check_model(real_model_path, isa, max_elems=1 << 15)
    assert seen & {"Q4_1", "Q4_K"}, seen


@pytest.mark.slow
def test_real_model_tensors_full(real_model_path):
    """Every tensor of each real model in full, on the default ISA (~30 s on a busy machine)."""
    _check_model(real_model_path, pylm.active_isa(), max_elems=1 << 40)


# ---------------------------------------------------------------- quantize


def _distributions(rng):
    sparse = rng.standard_normal((16, 256)) * (rng.random((16, 256)) < 0.1)
    return {
        "normal": rng.standard_normal((32, 256)),
        "zeros": np.zeros((4, 256)),
        "constant": np.full((4, 256), 0.37),
        "neg_constant": np.full((4, 256), -2.5),
        "large": rng.standard_normal((8, 256)) * 1e5,  # fp16 scales overflow to inf
        "tiny": rng.standard_normal((8, 256)) * 1e-6,
        "uniform_shifted": rng.uniform(-3, 7, (8, 256)),
        "integers": rng.integers(-20, 20, (8, 256)).astype(np.float64),
        "sparse_signed_zeros": sparse,  # 0 * negative = -0.0: sign of d follows x[0]
        "heavy_tail": rng.standard_t(2, (16, 256)),
    }


def _clear_negative_zero_m(q: np.ndarray, type_size: int) -> np.ndarray:
    """Q4_1 / Q5_1 bytes with every m == -0.0 (fp16 0x8000, bytes 2..3) set to +0.0."""
    blocks = q.reshape(-1, type_size).copy()
    neg_zero = (blocks[:, 2] == 0x00) & (blocks[:, 3] == 0x80)
    blocks[neg_zero, 3] = 0
    return blocks


@pytest.mark.parametrize("qtype", LEGACY + ["F16", "BF16"])
def test_quantize_legacy_bit_exact(qtype):
    rng = np.random.default_rng(5)
    for name, x in _distributions(rng).items():
        x = x.astype(np.float32)
        got = quantize(x, qtype)
        with np.errstate(all="ignore"):
            want = gguf_quantize(x, GT[qtype])
        want = np.ascontiguousarray(want).view(np.uint8).reshape(got.shape)
        if qtype in ("Q4_1", "Q5_1"):
            # NOTE: for a block whose minimum is a zero of both signs, np.min's SIMD reduction
            # returns an unspecified one (it depends on numpy's CPU dispatch), so the sign bit
            # of m = -0.0 / +0.0 is not comparable; both decode to identical values.
            ts = qtype_info(qtype)["type_size"]
            got, want = _clear_negative_zero_m(got, ts), _clear_negative_zero_m(want, ts)
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{qtype}/{name}: {len(bad)} bytes differ, first {bad[0]}"


def test_quantize_shapes_and_threads():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 512)).astype(np.float32)
    for qtype in ["Q8_0", "Q4_K", "F16"]:
        info = qtype_info(qtype)
        q = quantize(x, qtype, threads=1)
        assert q.dtype == np.uint8
        assert q.shape == (2, 3, 512 // info["block_size"] * info["type_size"])
        assert np.array_equal(quantize(x, qtype, threads=4), q)
        assert np.array_equal(quantize(x.reshape(-1), qtype).reshape(q.shape), q)
    # float64 input is converted like gguf does (astype float32).
    assert np.array_equal(quantize(x.astype(np.float64), "Q5_1"), quantize(x, "Q5_1"))


def test_quantize_errors():
    with pytest.raises(ValueError, match="row length 100"):
        quantize(np.zeros((2, 100), np.float32), "Q4_0")
    with pytest.raises(ValueError, match="row length 288"):
        quantize(np.zeros((2, 288), np.float32), "Q6_K")
    with pytest.raises(ValueError, match="IQ2_XXS"):
        quantize(np.zeros(256, np.float32), "IQ2_XXS")


# Relative RMSE (RMSE / std) measured on N(0, 1) data: Q2_K 0.29, Q3_K 0.15, Q4_K 0.071,
# Q5_K 0.036, Q6_K 0.018, Q8_K 0.007. Bounds leave ~40% headroom.
K_RMSE_BOUND = {"Q2_K": 0.40, "Q3_K": 0.21, "Q4_K": 0.10, "Q5_K": 0.05, "Q6_K": 0.025, "Q8_K": 0.01}


@pytest.mark.parametrize("qtype", list(K_RMSE_BOUND))
def test_quantize_k_roundtrip(isa, qtype):
    rng = np.random.default_rng(21)
    x = rng.standard_normal((16, 1024)).astype(np.float32)
    q = quantize(x, qtype)
    y = dequantize(q, qtype, x.shape)
    rel = float(np.sqrt(np.mean((y.astype(np.float64) - x) ** 2)) / x.std())
    assert rel < K_RMSE_BOUND[qtype], f"{qtype}: relative RMSE {rel:.4f}"
    if qtype != "Q8_K":  # gguf-py reads our bytes exactly as we do
        assert_same_f32(y, gguf_dequantize(q, GT[qtype]), qtype)


@pytest.mark.parametrize("qtype", list(K_RMSE_BOUND))
def test_quantize_k_special_rows(qtype):
    rng = np.random.default_rng(4)
    for name, x in _distributions(rng).items():
        x = x.astype(np.float32)
        y = dequantize(quantize(x, qtype), qtype, x.shape)
        assert np.isfinite(y).all(), f"{qtype}/{name}"
        if name == "zeros":
            assert not y.any(), f"{qtype}: zeros must stay zero"
        if name in (
            "normal",
            "uniform_shifted",
            "integers",
            "heavy_tail",
            "constant",
            "neg_constant",
        ):
            err = np.sqrt(np.mean((y - x) ** 2)) / max(
                np.sqrt(np.mean(x.astype(np.float64) ** 2)), 1e-30
            )
            # Student-t(2) outliers stretch the block scales: looser bound for that one.
            factor = 4 if name == "heavy_tail" else 2
            assert err < factor * K_RMSE_BOUND[qtype], f"{qtype}/{name}: {err:.4f}"


def test_q8_1_sum_field():
    x = np.random.default_rng(2).standard_normal((4, 64)).astype(np.float32)
    """Q8_1 (ggml layout: fp16 d, fp16 s, 32 int8) stores s = fp16(sum(q) * d), d unrounded."""
    q = quantize(x, "Q8_1").reshape(-1, 36)
    d32 = np.abs(x.reshape(-1, 32)).max(1) / np.float32(127)
    d = q[:, 0:2].copy().view(np.float16).ravel()
    s = q[:, 2:4].copy().view(np.float16).ravel()
    qs = q[:, 4:].view(np.int8).astype(np.int32)
    assert np.array_equal(d, d32.astype(np.float16))
    assert np.array_equal(s, (qs.sum(1).astype(np.float32) * d32).astype(np.float16))
    y = dequantize(quantize(x, "Q8_1"), "Q8_1", x.shape)
    assert np.abs(y - x).max() <= np.abs(x).max() / 127


# ---------------------------------------------------------------- type table


def test_qtype_table():
    assert qtype_info("q4_k") == {"name": "Q4_K", "id": 12, "block_size": 256, "type_size": 144}
    assert qtype_info(GT.Q8_0)["type_size"] == 34
    # Q8_1 is left out: gguf-py still lists its old 40-byte float layout; ggml's is 36 bytes.
    for name in GGUF_TYPES + ["Q8_K"]:
        assert name in QTYPES
        info = qtype_info(name)
        assert info["id"] == GT[name].value
        assert (info["block_size"], info["type_size"]) == GGML_QUANT_SIZES[GT[name]]
    for name in LEGACY + ["Q4_K", "Q6_K", "F16", "F32"]:
        assert name in QUANTIZE_TYPES
    with pytest.raises(ValueError, match="NOPE"):
        qtype_info("NOPE")
