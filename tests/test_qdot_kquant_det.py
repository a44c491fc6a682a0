"""K-quant qmatmul (Q2_K .. Q6_K x Q8K activations) is bit-identical on every ISA.

The canonical evaluation order is defined in csrc/quant/qdot_kquant_ref.cpp: per super-block 16
exact int32 lanes (the lanes of AVX-512's vpdpbusd/vpackssdw/vpdpwssd chain), per-lane float
mul / FMA with d, dmin and the activation scale, and one fixed reduction tree. `canonical()`
below re-implements that definition in numpy, decoding the blocks through the `gguf` package
(dequantize with d = 1, dmin = 0 gives sc * q exactly), with a correctly rounded fmaf, so every
ISA is checked against an independent oracle with assert_array_equal, not only against scalar.
"""

from __future__ import annotations

import zlib

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, np_roundf

import pylm
from pylm import _core

T = gguf.GGMLQuantizationType
KQUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# fp16 fields: (d, dmin) byte offsets; Q3_K/Q6_K have no dmin (offset codes u - 4 / u - 32).
D_OFF = {"Q2_K": (80, 82), "Q3_K": (108, None), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208, None)}
CODE_OFFSET = {"Q2_K": 0, "Q3_K": 4, "Q4_K": 0, "Q5_K": 0, "Q6_K": 32}
# Byte ranges of the quant codes and the byte that makes every code decode to q = 1.
ONES = {
    "Q2_K": [(16, 80, 0x55)],
    "Q3_K": [(0, 32, 0xFF), (32, 96, 0x55)],
    "Q4_K": [(16, 144, 0x11)],
    "Q5_K": [(16, 48, 0x00), (48, 176, 0x11)],
    "Q6_K": [(0, 128, 0x11), (128, 192, 0xAA)],
}


def blocks_of(raw: np.ndarray, name: str) -> np.ndarray:
    ts = gguf.GGML_QUANT_SIZES[T[name]][1]
    return raw.reshape(-1, ts).copy()


def set_f16(b: np.ndarray, off: int, v) -> None:
    v16 = np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float16), b.shape[:1]))
    b[:, off : off + 2] = v16.view(np.uint8).reshape(-1, 2)


def deq(b: np.ndarray, name: str, d, dmin) -> np.ndarray:
    """gguf dequantize of blocks b with the fp16 d / dmin fields replaced: (nb, 256) float64."""
    b = b.copy()
    od, om = D_OFF[name]
    set_f16(b, od, d)
    if om is not None:
        set_f16(b, om, dmin)
    return dequantize(b, T[name]).astype(np.float64).reshape(-1, 256)


def decode(raw: np.ndarray, name: str):
    """-> scu (nb, 256) int64 = sc * u, mins16 (nb, 16) int64, d, dmin (nb,) float32."""
    b = blocks_of(raw, name)
    sq = deq(b, name, 1, 0)  # sc * q, exact integers
    ones = b.copy()
    for lo, hi, byte in ONES[name]:
        ones[:, lo:hi] = byte
    sc = deq(ones, name, 1, 0)  # sc (q = 1)
    off = CODE_OFFSET[name]
    scu = (sq + off * sc).astype(np.int64)
    if off:
        mins16 = (off * sc[:, ::16]).astype(np.int64)
    else:
        mins16 = (-deq(b, name, 0, 1)[:, ::16]).astype(np.int64)
    od, om = D_OFF[name]
    d = b[:, od : od + 2].copy().view(np.float16)[:, 0].astype(np.float32)
    dmin = (
        b[:, om : om + 2].copy().view(np.float16)[:, 0].astype(np.float32)
        if om is not None
        else np.zeros_like(d)
    )
    return scu, mins16, d, dmin


def q8k(x: np.ndarray):
    """Q8K activations: qs (M, nb, 256) int64, d (M, nb) float32, bsums (M, nb, 16) int64."""
    xb = x.reshape(x.shape[0], -1, 256)
    d = np.abs(xb).max(axis=2) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    qs = np_roundf(xb * inv[..., None]).astype(np.int64)
    return qs, d, qs.reshape(*qs.shape[:2], 16, 16).sum(axis=3)


def fmaf(a, b, c) -> np.ndarray:
    """Correctly rounded float32 a * b + c (a * b is exact in float64; TwoSum keeps the sum's
    error, which decides the only double-rounding case: a float64 sum on a float32 midpoint)."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    e = (p - (s - bb)) + (c - bb)
    r = s.astype(np.float32)
    away = np.where(s > r.astype(np.float64), np.float32(np.inf), np.float32(-np.inf))
    r2 = np.nextafter(r, away)
    tie = (r.astype(np.float64) != s) & ((r.astype(np.float64) + r2.astype(np.float64)) / 2 == s)
    fix = tie & (e != 0) & ((e > 0) == (r2 > r))  # the exact value lies on r2's side
    return np.where(fix, r2, r).astype(np.float32)


def canonical(x: np.ndarray, raw: np.ndarray, name: str, n: int, k: int) -> np.ndarray:
    """The canonical K-quant product y = x @ W.T (qdot_kquant_ref.cpp), float32 (M, n)."""
    nsb = k // 256
    scu, mins16, d, dmin = decode(raw, name)
    scu = scu.reshape(n, nsb, 256)
    mins16, d, dmin = mins16.reshape(n, nsb, 16), d.reshape(n, nsb), dmin.reshape(n, nsb)
    qs, dx, bsums = q8k(x)
    acc = np.zeros((x.shape[0], n, 16), np.float32)
    for b in range(nsb):
        prod = qs[:, None, b, :] * scu[None, :, b, :]  # (M, n, 256)
        # w = 128 c1 + 64 c0 + 16 L + 8 b3 + r -> lane 4 L + 2 c0 + b3
        lanes = prod.reshape(*prod.shape[:2], 2, 2, 4, 2, 8).sum(axis=(2, 6))
        isum = lanes.transpose(0, 1, 3, 2, 4).reshape(*prod.shape[:2], 16)
        ms = np.zeros_like(isum)
        pair = bsums[:, None, b, :] * mins16[None, :, b, :]
        ms[..., :8] = pair.reshape(*pair.shape[:2], 8, 2).sum(axis=3)
        db = d[None, :, b, None]
        if CODE_OFFSET[name]:
            t = (isum - ms).astype(np.int32).astype(np.float32) * db
        else:
            t = isum.astype(np.int32).astype(np.float32) * db
            t[..., :8] = fmaf(
                -ms[..., :8].astype(np.int32).astype(np.float32), dmin[None, :, b, None], t[..., :8]
            )
        acc = fmaf(t, dx[:, None, b, None], acc)
    v = acc
    v = v[..., :8] + v[..., 8:]
    v = v[..., :4] + v[..., 4:]
    v = v[..., :2] + v[..., 2:]
    return v[..., 0] + v[..., 1]


def random_kquant(name: str, n: int, k: int, rng, extreme: bool = False) -> np.ndarray:
    """(n, row_bytes) random blocks; fp16 d / dmin of random sign and sane size. extreme: every
    scale at its largest magnitude and every code at its maximum."""
    bs, ts = gguf.GGML_QUANT_SIZES[T[name]]
    b = rng.integers(0, 256, size=(n * k // bs, ts), dtype=np.uint8)
    if extreme:
        b[:] = 0xFF
        if name == "Q6_K":
            b[:, 192:208] = 0x81  # scales -127 (odd: lane sums need not be even)
        if name == "Q3_K":
            b[:, 96:108] = 0x00  # scales -32
    for off in D_OFF[name]:
        if off is not None:
            v = rng.uniform(0.2, 2.0, size=b.shape[0]) * rng.choice([-1, 1], size=b.shape[0])
            set_f16(b, off, (v * 0.01).astype(np.float16))
    return b.reshape(n, -1)


def extreme_activations(m: int, k: int, rng) -> np.ndarray:
    """|a| in 102..127, positive on the weights of lanes 0 and 8 (first 8 of every 32) and
    negative elsewhere: with extreme blocks, Q6_K's is - ms in lane 0 reaches ~2.2e7 > 2^24
    (an inexact int32 -> float conversion, which every ISA must round the same way)."""
    w = np.arange(k) % 256
    sign = np.where((w & 24) == 0, 1.0, -1.0)
    x = sign * rng.uniform(0.8, 1.0, size=(m, k))
    x[:, ::256] = sign[::256]
    x[0, :256] = 0.0
    return x.astype(np.float32)


def activations(m: int, k: int, rng) -> np.ndarray:
    """Rows with block magnitudes from 1e-3 to 1e3, one all-zero block, one constant block."""
    x = rng.standard_normal((m, k)) * 10.0 ** rng.uniform(-3, 3, size=(m, k // 256, 1)).repeat(
        256, axis=1
    ).reshape(m, k)
    x[0, :256] = 0.0
    if k >= 512:
        x[-1, 256:512] = 1.5
    return x.astype(np.float32)


@pytest.mark.parametrize("name", KQUANTS)
@pytest.mark.parametrize("extreme", [False, True])
def test_matches_canonical_numpy(isa, name, extreme):
    rng = np.random.default_rng(zlib.crc32(f"canon-{name}-{extreme}".encode()))
    n, k, m = 19, 256 * 3, 6
    raw = random_kquant(name, n, k, rng, extreme)
    x = extreme_activations(m, k, rng) if extreme else activations(m, k, rng)
    want = canonical(x, raw, name, n, k)
    np.testing.assert_array_equal(pylm.ops.qmatmul(x, raw, name, (n, k), threads=1), want)
    np.testing.assert_array_equal(_core._vec_dot(x[1], raw[5], name), want[1, 5])


@pytest.mark.parametrize("name", KQUANTS)
def test_bit_identical_to_scalar(isa, name):
    """Every activation-row count 1..9 and 17 (the gemm groups of 8 / 4 / rest), odd N."""
    rng = np.random.default_rng(zlib.crc32(f"isa-{name}".encode()))
    n, k = 13, 256 * 2
    raw = random_kquant(name, n, k, rng)
    for m in list(range(1, 10)) + [17]:
        x = activations(m, k, rng)
        y = pylm.ops.qmatmul(x, raw, name, (n, k), threads=1)
        with pylm.use_isa("scalar"):
            y0 = pylm.ops.qmatmul(x, raw, name, (n, k), threads=1)
        np.testing.assert_array_equal(y, y0, err_msg=f"{name} M={m}")


@pytest.mark.parametrize("name", KQUANTS)
def test_batch_invariance(isa, name):
    """A row's result is the same alone, in any batch, through vec_dot, and for any threads."""
    rng = np.random.default_rng(zlib.crc32(f"batch-{name}".encode()))
    n, k = 45, 256 * 2
    raw = random_kquant(name, n, k, rng)
    x = activations(19, k, rng)
    y = pylm.ops.qmatmul(x, raw, name, (n, k), threads=1)
    np.testing.assert_array_equal(pylm.ops.qmatmul(x, raw, name, (n, k), threads=3), y)
    np.testing.assert_array_equal(pylm.ops.qmatmul(x[5:12], raw, name, (n, k)), y[5:12])
    for i in (0, 4, 8, 18):
        np.testing.assert_array_equal(pylm.ops.qmatvec(x[i], raw, name, (n, k)), y[i])
        assert _core._vec_dot(x[i], raw[n - 1], name) == y[i, n - 1]


@pytest.fixture(scope="module")
def gemma3_kquant(gemma3_path):
    """The K-quant matrices of Gemma-3's first block: name -> (qtype, raw (N, bytes), N, K)."""
    out = {}
    for t in gguf.GGUFReader(gemma3_path).tensors:
        if t.name.startswith("blk.0.") and t.tensor_type.name in KQUANTS:
            out[t.name] = (t.tensor_type.name, np.array(t.data), int(t.shape[1]), int(t.shape[0]))
    return out


def test_gemma3_matrices(isa, gemma3_kquant):
    """Real Q4_K / Q6_K weights: every ISA equals the canonical numpy product bit for bit."""
    assert {q for q, *_ in gemma3_kquant.values()} >= {"Q4_K", "Q6_K"}
    rng = np.random.default_rng(21)
    for tname, (qname, raw, n, k) in sorted(gemma3_kquant.items()):
        raw, n = raw[:96], min(n, 96)
        x = activations(3, k, rng)
        want = canonical(x, raw, qname, n, k)
        np.testing.assert_array_equal(pylm.ops.qmatmul(x, raw, qname, (n, k)), want, tname)
