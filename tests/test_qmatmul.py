"""pylm.ops.qmatmul / qmatvec: y = x @ W.T with W in a GGUF block format, on every ISA.

References (float64 numpy, W dequantized by gguf.quants.dequantize):

* exact model: the kernels quantize x to int8 blocks (d = max|x|/127 in float32,
  q = round-half-away(x / d), gguf's np_roundf) and then compute exactly. Rebuilding that x in
  numpy and multiplying in float64 must agree with the kernels up to float32 accumulation:
  |y - ref_q| <= 2e-5 * |x_row| * |W_row| (K/32 scaled block sums of float32 rounding each).
* float reference x @ W.T: the only extra error is the activation rounding, |e_i| <= d/2 with
  d = max|x_block| / 127, so per block |e|^2 <= bs * (max|x_block| / 254)^2 <= bs / 254^2 *
  |x_block|^2, and by Cauchy-Schwarz |y - ref| <= sqrt(bs) / 254 * |x_row| * |W_row| with
  bs = 32 (legacy types: 0.0223) or 256 (K-quants: 0.063). That bound is rigorous but loose,
  so we also require the RMS of the relative error to stay below 5e-3 (random data gives ~1e-3).
* ISAs: same integer math, different float summation order: |y_isa - y_scalar| <= 1e-5 * norms.
* F32 / F16 / BF16 weights use float dot products: |y - ref| <= 1e-5 * norms.
"""

from __future__ import annotations

import functools
import zlib

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, np_roundf, quantize

import pylm
from pylm import _core

T = gguf.GGMLQuantizationType
LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
KQUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
FLOATS = ["F32", "F16", "BF16"]
MS = [1, 2, 3, 5, 16, 37]
# K per family: odd block counts and partial 16-block groups (legacy), several super-blocks,
# and float lengths that are not a multiple of the SIMD width.
K_OF = {"legacy": 32 * 35, "kquant": 256 * 3, "float": 600}
N = 67


def family(name: str) -> str:
    return "legacy" if name in LEGACY else "kquant" if name in KQUANTS else "float"


def random_weights(name: str, n: int, k: int, rng) -> np.ndarray:
    """Raw GGUF bytes (n, row_bytes) of a random (n, k) matrix of type `name`."""
    qt = T[name]
    if name in KQUANTS:  # random bytes, with d / dmin replaced by sane fp16 values
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(n, k // bs, ts), dtype=np.uint8)
        offsets = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
        for off in offsets[name]:
            d = rng.uniform(0.2, 2.0, size=(n, k // bs)).astype(np.float16) * np.float16(0.01)
            raw[:, :, off : off + 2] = d.view(np.uint8).reshape(n, k // bs, 2)
        return raw.reshape(n, -1)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if name == "F32":
        return w.view(np.uint8)
    if name == "F16":
        return w.astype(np.float16).view(np.uint8)
    return quantize(w, qt).view(np.uint8)


def dequant(raw: np.ndarray, name: str, n: int) -> np.ndarray:
    return dequantize(raw.reshape(n, -1), T[name]).astype(np.float64)


def quantized_x(x: np.ndarray, bs: int) -> np.ndarray:
    """The activations as the kernels see them: d * round_half_away(x / d), d = max|x| / 127."""
    xb = x.reshape(x.shape[0], -1, bs)
    d = np.abs(xb).max(axis=2, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np_roundf(xb * inv)
    return (q.astype(np.float64) * d.astype(np.float64)).reshape(x.shape)


def norms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (
        np.linalg.norm(x.astype(np.float64), axis=1)[:, None] * np.linalg.norm(w, axis=1)[None, :]
    )


def check(y, x, raw, name, n, k, isa):
    """All the assertions of the module docstring for one product."""
    w = dequant(raw, name, n)
    scale = norms(x, w) + 1e-30
    ref = x.astype(np.float64) @ w.T
    if family(name) == "float":
        assert np.abs(y - ref).max() <= 1e-5 * scale.max(), name
        assert np.all(np.abs(y - ref) <= 1e-5 * scale + 1e-6), name
        return
    bs = 32 if family(name) == "legacy" else 256
    ref_q = quantized_x(x, bs) @ w.T
    np.testing.assert_array_less(np.abs(y - ref_q), 2e-5 * scale + 1e-6, err_msg=f"{name} exact")
    bound = np.sqrt(bs) / 254 * 1.001
    np.testing.assert_array_less(np.abs(y - ref), bound * scale + 1e-6, err_msg=f"{name} bound")
    assert np.sqrt(np.mean(((y - ref) / scale) ** 2)) < 5e-3, name
    if isa != "scalar":
        with pylm.use_isa("scalar"):
            y0 = pylm.ops.qmatmul(x, raw, name, (n, k))
        np.testing.assert_array_less(
            np.abs(y - y0), 1e-5 * scale + 1e-7, err_msg=f"{name} vs scalar"
        )


@pytest.mark.parametrize("name", LEGACY + KQUANTS + FLOATS)
@pytest.mark.parametrize("m", MS)
def test_random_matrices(isa, name, m):
    rng = np.random.default_rng(zlib.crc32(f"{name}-{m}".encode()))
    k = K_OF[family(name)]
    raw = random_weights(name, N, k, rng)
    x = rng.standard_normal((m, k)).astype(np.float32)
    y = pylm.ops.qmatmul(x, raw, name, (N, k))
    assert y.shape == (m, N) and y.dtype == np.float32
    check(y, x, raw, name, N, k, isa)


@pytest.mark.parametrize(
    "name,k",
    [
        ("Q4_0", 32),
        ("Q5_1", 64),
        ("Q8_0", 96),
        ("Q6_K", 256),
        ("F16", 1),
        ("BF16", 17),
        ("F32", 33),
    ],
)
def test_small_k(isa, name, k):
    rng = np.random.default_rng(7)
    raw = random_weights(name, 5, k, rng)
    x = rng.standard_normal((3, k)).astype(np.float32)
    check(pylm.ops.qmatmul(x, raw, name, (5, k)), x, raw, name, 5, k, isa)


@pytest.mark.parametrize("name", LEGACY + KQUANTS + FLOATS)
def test_vec_dot_kernel(isa, name):
    """The per-type vec_dot of the kernel table equals the matching qmatmul row."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    k = K_OF[family(name)]
    raw = random_weights(name, 3, k, rng)
    x = rng.standard_normal(k).astype(np.float32)
    y = pylm.ops.qmatvec(x, raw, name, (3, k))
    scale = norms(x[None], dequant(raw, name, 3))[0]
    for n in range(3):
        assert abs(_core._vec_dot(x, raw[n], name) - y[n]) <= 1e-6 * scale[n] + 1e-7


def test_long_rows(isa):
    """K = 32 * 2049 blocks: more block scales than one conversion batch (AVX-512 legacy)."""
    rng = np.random.default_rng(8)
    k = 32 * 2049
    for name in ("Q4_1", "Q8_0"):
        raw = random_weights(name, 3, k, rng)
        x = rng.standard_normal((2, k)).astype(np.float32)
        check(pylm.ops.qmatmul(x, raw, name, (3, k)), x, raw, name, 3, k, isa)


def test_zero_and_tie_activations(isa):
    """Zero blocks (d = 0) and values exactly halfway between steps."""
    k = 128
    x = np.zeros((2, k), np.float32)
    x[1, 32:64] = np.arange(32, dtype=np.float32) - 15.5  # x/d hits .5 ties
    x[1, 64] = 127.0
    x[1, 65] = 0.5
    rng = np.random.default_rng(3)
    raw = random_weights("Q4_1", 9, k, rng)
    y = pylm.ops.qmatmul(x, raw, "Q4_1", (9, k))
    assert np.all(y[0] == 0)
    check(y, x, raw, "Q4_1", 9, k, isa)


def test_quantize_act_q8s_matches_gguf_q8_0(isa):
    """Q8S activation rows: qs bit-identical to gguf's Q8_0, float d, s = d * sum(q)."""
    rng = np.random.default_rng(11)
    k = 32 * 20
    x = (rng.standard_normal((4, k)) * rng.uniform(0.01, 100, size=(4, 1))).astype(np.float32)
    x[2, :32] = 0
    act = _core._quantize_act(x, "Q4_0")
    q8 = quantize(x, T.Q8_0).reshape(4, k // 32, 34)
    qs = act[:, :k].view(np.int8).reshape(4, k // 32, 32)
    np.testing.assert_array_equal(qs, q8[:, :, 2:].view(np.int8))
    d = act[:, k : k + 4 * (k // 32)].copy().view(np.float32)
    s = act[:, k + 4 * (k // 32) : k + 8 * (k // 32)].copy().view(np.float32)
    d_ref = np.abs(x.reshape(4, -1, 32)).max(axis=2) / np.float32(127)
    np.testing.assert_array_equal(d, d_ref)
    np.testing.assert_array_equal(
        d.astype(np.float16), q8[:, :, :2].copy().view(np.float16)[..., 0]
    )
    np.testing.assert_array_equal(s, d_ref * qs.astype(np.int32).sum(axis=2).astype(np.float32))


def test_quantize_act_q8k(isa):
    """Q8K activation blocks (block_q8_K: float d, int8 qs[256], int16 bsums[16])."""
    rng = np.random.default_rng(12)
    k = 512
    x = (rng.standard_normal((3, k)) * 3).astype(np.float32)
    act = _core._quantize_act(x, "Q4_K")
    blocks = act[:, : 2 * 292].reshape(3, 2, 292)
    d = blocks[:, :, :4].copy().view(np.float32)[..., 0]
    qs = blocks[:, :, 4:260].view(np.int8)
    bsums = blocks[:, :, 260:].copy().view(np.int16)
    xb = x.reshape(3, 2, 256)
    d_ref = np.abs(xb).max(axis=2) / np.float32(127)
    np.testing.assert_array_equal(d, d_ref)
    np.testing.assert_array_equal(
        qs, np_roundf(xb * (np.float32(1) / d_ref)[..., None]).astype(np.int8)
    )
    np.testing.assert_array_equal(bsums, qs.reshape(3, 2, 16, 16).astype(np.int16).sum(axis=3))


@pytest.mark.parametrize("name", ["Q4_1", "Q4_K", "Q8_0", "F16"])
@pytest.mark.parametrize("m", [1, 37])
def test_threads_identical(isa, name, m):
    rng = np.random.default_rng(5)
    k = K_OF[family(name)]
    raw = random_weights(name, 301, k, rng)
    x = rng.standard_normal((m, k)).astype(np.float32)
    y1 = pylm.ops.qmatmul(x, raw, name, (301, k), threads=1)
    y2 = pylm.ops.qmatmul(x, raw, name, (301, k), threads=2)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("name", ["Q4_0", "Q5_1", "Q3_K", "Q5_K", "BF16"])
def test_matmul_rows_equal_matvecs(isa, name):
    """Row m of a matrix product is the matvec of x[m] (up to float summation order)."""
    rng = np.random.default_rng(9)
    k = K_OF[family(name)]
    raw = random_weights(name, 33, k, rng)
    x = rng.standard_normal((6, k)).astype(np.float32)
    y = pylm.ops.qmatmul(x, raw, name, (33, k))
    rows = np.stack([pylm.ops.qmatvec(x[i], raw, name, (33, k)) for i in range(6)])
    scale = norms(x, dequant(raw, name, 33))
    np.testing.assert_array_less(np.abs(y - rows), 1e-6 * scale + 1e-7)


# ---- real model matrices -------------------------------------------------------------------


@functools.cache
def read_tensors(path, names: tuple[str, ...]) -> dict:
    """name -> (qtype name, raw bytes (N, row_bytes), N, K), parsed once per session
    (GGUFReader takes seconds on Gemma's 262k-token vocabulary)."""
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        if t.name in names:
            n = int(t.shape[1]) if len(t.shape) > 1 else 1
            out[t.name] = (t.tensor_type.name, np.array(t.data), n, int(t.shape[0]))
    return out


SMOLLM2 = ("blk.0.ffn_up.weight", "token_embd.weight")
GEMMA3 = (
    "blk.0.attn_output.weight",
    "blk.0.attn_q.weight",
    "blk.0.ffn_down.weight",
    "blk.0.attn_v.weight",
)


@pytest.mark.parametrize("tname,rows", [("blk.0.ffn_up.weight", None), ("token_embd.weight", 300)])
def test_smollm2_matrices(isa, smollm2_path, tname, rows):
    qname, data, n, k = read_tensors(smollm2_path, SMOLLM2)[tname]
    assert qname in ("Q4_1", "Q8_0")
    if rows is not None:
        data, n = data[:rows], rows
    rng = np.random.default_rng(1)
    for m in (1, 5):
        x = rng.standard_normal((m, k)).astype(np.float32)
        check(pylm.ops.qmatmul(x, data, qname, (n, k)), x, data, qname, n, k, isa)


@pytest.mark.parametrize("tname", GEMMA3)
def test_gemma3_matrices(isa, gemma3_path, tname):
    qname, data, n, k = read_tensors(gemma3_path, GEMMA3)[tname]
    assert qname in ("Q4_K", "Q5_0", "Q6_K", "Q8_0")
    rng = np.random.default_rng(2)
    for m in (1, 3):
        x = rng.standard_normal((m, k)).astype(np.float32)
        check(pylm.ops.qmatmul(x, data, qname, (n, k)), x, data, qname, n, k, isa)


# ---- API -----------------------------------------------------------------------------------


def test_vector_and_qtype_forms():
    rng = np.random.default_rng(4)
    raw = random_weights("Q4_K", 7, 256, rng)
    x = rng.standard_normal(256).astype(np.float32)
    y = pylm.ops.qmatvec(x, raw, "Q4_K", (7, 256))
    assert y.shape == (7,)
    for qt in (T.Q4_K, int(T.Q4_K), np.int32(12), "q4_k"):
        np.testing.assert_array_equal(pylm.ops.qmatmul(x, raw, qt, (7, 256)), y)
    np.testing.assert_array_equal(
        pylm.ops.qmatmul(x[None], raw.reshape(-1), "Q4_K", (7, 256))[0], y
    )
    xs = rng.standard_normal((3, 512)).astype(np.float32)[:, ::2]  # non-contiguous rows
    np.testing.assert_array_equal(
        pylm.ops.qmatmul(xs, raw, "Q4_K", (7, 256)),
        pylm.ops.qmatmul(np.ascontiguousarray(xs), raw, "Q4_K", (7, 256)),
    )


def test_errors():
    rng = np.random.default_rng(6)
    raw = random_weights("Q4_0", 8, 64, rng)
    x = np.ones(64, np.float32)
    with pytest.raises(ValueError, match=r"x.shape\[-1\]=63.*K=64"):
        pylm.ops.qmatmul(np.ones(63, np.float32), raw, "Q4_0", (8, 64))
    with pytest.raises(ValueError, match=r"w_raw has 288 bytes.*Q4_0 \(9, 64\).*needs 324"):
        pylm.ops.qmatmul(x, raw, "Q4_0", (9, 64))
    with pytest.raises(ValueError, match=r"K=48 is not a multiple of the Q4_0 block size 32"):
        pylm.ops.qmatmul(np.ones(48, np.float32), raw, "Q4_0", (8, 48))
    with pytest.raises(ValueError, match=r"unknown qtype 'Q9_9'"):
        pylm.ops.qmatmul(x, raw, "Q9_9", (8, 64))
    with pytest.raises(ValueError, match=r"unknown qtype 99"):
        pylm.ops.qmatmul(x, raw, 99, (8, 64))
    with pytest.raises(ValueError, match=r"Q8_K is not supported"):
        pylm.ops.qmatmul(x, raw, "Q8_K", (8, 64))
    with pytest.raises(ValueError, match=r"float32.*float64"):
        pylm.ops.qmatmul(np.ones(64), raw, "Q4_0", (8, 64))
    with pytest.raises(ValueError, match=r"shape must be \(N, K\)"):
        pylm.ops.qmatmul(x, raw, "Q4_0", (8,))
    with pytest.raises(ValueError, match=r"1-D"):
        pylm.ops.qmatvec(np.ones((2, 64), np.float32), raw, "Q4_0", (8, 64))
