"""RMSNorm, RoPE and softmax (pylm.ops) against float64 numpy references, on every ISA.

Shapes cover C = 1, odd sizes (tail loops / masks), the model widths 576 / 640 / 2048 and a
vocab-sized row of 49152; multi-row shapes are large enough to be split across threads.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import pylm
from pylm import ops

ROW_SHAPES = [(1, 1), (5, 7), (3, 31), (37, 576), (3, 640), (9, 2048), (2, 49152), (2, 3, 65)]


def rng_for(*key) -> np.random.Generator:
    """A generator seeded from the test's key (stable across runs, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ---- float64 references ----


def ref_rmsnorm(x, w, eps):
    x = x.astype(np.float64)
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y if w is None else y * w.astype(np.float64)


def ref_rope(x, pos, base, mode, n_dims, freq_scale=1.0):
    y = x.astype(np.float64).copy()
    half = n_dims // 2
    inv = base ** (-2.0 * np.arange(half) / n_dims) * freq_scale
    theta = pos.astype(np.float64)[:, None] * inv[None, :]  # (T, half)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    if mode == "neox":
        a, b = y[..., :half].copy(), y[..., half:n_dims].copy()
        y[..., :half], y[..., half:n_dims] = a * c - b * s, a * s + b * c
    else:
        a, b = y[..., 0:n_dims:2].copy(), y[..., 1:n_dims:2].copy()
        y[..., 0:n_dims:2], y[..., 1:n_dims:2] = a * c - b * s, a * s + b * c
    return y


def ref_softmax(x, scale=1.0):
    z = x.astype(np.float64) * scale
    m = z.max(axis=-1, keepdims=True)
    dead = np.isneginf(m)  # fully masked rows: zeros by contract
    with np.errstate(invalid="ignore"):
        e = np.exp(z - np.where(dead, 0.0, m))
    e = np.where(dead, 0.0, e)
    s = e.sum(axis=-1, keepdims=True)
    return np.where(dead, 0.0, e / np.where(s == 0, 1.0, s))


# ---- RMSNorm ----


@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("with_weight", [True, False])
def test_rmsnorm_matches_numpy(isa, shape, with_weight):
    rng = rng_for("rmsnorm", shape, with_weight)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    w = (rng.standard_normal(shape[-1]) + 1).astype(np.float32) if with_weight else None
    y = ops.rmsnorm(x, w, eps=1e-6)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, ref_rmsnorm(x, w, 1e-6), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("magnitude", [1e-15, 1e15])
def test_rmsnorm_large_and_small_magnitudes(isa, magnitude):
    rng = rng_for("rmsnorm-mag", magnitude)
    x = (rng.standard_normal((4, 2048)) * magnitude).astype(np.float32)
    np.testing.assert_allclose(ops.rmsnorm(x, eps=0.0), ref_rmsnorm(x, None, 0.0), rtol=1e-5)
    # eps dominates a tiny mean square: y ~ x / sqrt(eps).
    np.testing.assert_allclose(
        ops.rmsnorm(x, eps=1e-6), ref_rmsnorm(x, None, 1e-6), rtol=1e-5, atol=1e-30
    )


def test_rmsnorm_in_place(isa):
    rng = rng_for("rmsnorm-inplace")
    x = rng.standard_normal((33, 640)).astype(np.float32)
    w = rng.standard_normal(640).astype(np.float32)
    want = ref_rmsnorm(x, w, 1e-5)
    got = ops.rmsnorm(x, w, eps=1e-5, out=x)
    assert got is x or np.shares_memory(got, x)
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


def test_rmsnorm_zero_rows_and_threads(isa):
    x = rng_for("rmsnorm-zero").standard_normal((64, 576)).astype(np.float32)
    x[3] = 0.0  # all-zero row: y = 0 (no NaN) with eps > 0
    y1 = ops.rmsnorm(x, threads=1)
    y2 = ops.rmsnorm(x, threads=2)
    assert np.array_equal(y1, y2)
    assert np.all(y1[3] == 0.0)
    np.testing.assert_allclose(y1, ref_rmsnorm(x, None, 1e-6), rtol=1e-5, atol=1e-6)


def test_rmsnorm_errors():
    x = np.ones((2, 576), np.float32)
    with pytest.raises(ValueError, match=r"x.shape\[-1\]=576 but weight.shape\[0\]=640"):
        ops.rmsnorm(x, np.ones(640, np.float32))
    with pytest.raises(ValueError, match="float32"):
        ops.rmsnorm(x.astype(np.float64))
    with pytest.raises(ValueError, match="eps"):
        ops.rmsnorm(x, eps=-1.0)
    with pytest.raises(ValueError, match=r"out.shape=\(2, 575\)"):
        ops.rmsnorm(x, out=np.empty((2, 575), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.rmsnorm(np.ones((576, 2), np.float32).T)


# ---- RoPE ----

ROPE_SHAPES = [  # (T, H, D, n_dims)
    (5, 3, 64, 64),  # SmolLM2 head
    (3, 2, 256, 256),  # Gemma 3 head
    (4, 4, 64, 32),  # partial rotation: channels 32..63 pass through
    (3, 2, 10, 6),  # odd vector tails
    (2, 1, 2, 2),
    (40, 9, 64, 64),  # enough tokens to split across threads
]


@pytest.mark.parametrize("mode", ["normal", "neox"])
@pytest.mark.parametrize("shape", ROPE_SHAPES)
def test_rope_matches_numpy(isa, mode, shape):
    T, H, D, n_dims = shape
    rng = rng_for("rope", mode, shape)
    x = rng.standard_normal((T, H, D)).astype(np.float32)
    pos = rng.integers(0, 32769, size=T).astype(np.int32)
    pos[0], pos[-1] = 0, 32768
    y = ops.rope(x, pos, base=10000.0, mode=mode, n_dims=n_dims)
    assert y.shape == x.shape and not np.shares_memory(y, x)
    np.testing.assert_allclose(y, ref_rope(x, pos, 10000.0, mode, n_dims), rtol=0, atol=1e-4)
    assert np.array_equal(y[..., n_dims:], x[..., n_dims:])


@pytest.mark.parametrize("mode", ["normal", "neox"])
def test_rope_base_and_freq_scale(isa, mode):
    rng = rng_for("rope-scale", mode)
    x = rng.standard_normal((6, 2, 128)).astype(np.float32)
    pos = np.array([0, 1, 7, 1000, 20000, 32767], np.int64)  # any integer dtype is accepted
    y = ops.rope(x, pos, base=1e6, mode=mode, freq_scale=0.25)
    np.testing.assert_allclose(y, ref_rope(x, pos, 1e6, mode, 128, 0.25), rtol=0, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_rope_long_consecutive_run(isa, threads):
    """Prefill-style positions 0..32767 (angles: exact at multiples of 64, rotated between)."""
    T = 32768
    x = rng_for("rope-run").standard_normal((T, 1, 16)).astype(np.float32)
    pos = np.arange(T, dtype=np.int32)
    pos[20000:] += 5  # a jump off the 64-grid
    y = ops.rope(x, pos, mode="normal", threads=threads)
    np.testing.assert_allclose(y, ref_rope(x, pos, 10000.0, "normal", 16), rtol=0, atol=1e-5)


def test_rope_position_zero_is_identity_and_norm_preserved(isa):
    x = rng_for("rope-id").standard_normal((2, 3, 64)).astype(np.float32)
    y = ops.rope(x, np.array([0, 12345]), mode="neox")
    assert np.array_equal(y[0], x[0])
    np.testing.assert_allclose(
        np.linalg.norm(y[1], axis=-1), np.linalg.norm(x[1], axis=-1), rtol=1e-5
    )


def test_rope_in_place(isa):
    rng = rng_for("rope-inplace")
    x = rng.standard_normal((4, 2, 64)).astype(np.float32)
    pos = np.array([3, 4, 5, 6], np.int32)
    want = ref_rope(x, pos, 10000.0, "normal", 64)
    y = ops.rope(x, pos, inplace=True)
    assert np.shares_memory(y, x)
    np.testing.assert_allclose(x, want, rtol=0, atol=1e-4)


def test_rope_errors():
    x = np.zeros((2, 1, 8), np.float32)
    pos = np.array([0, 1], np.int32)
    with pytest.raises(ValueError, match="n_dims=7"):
        ops.rope(x, pos, n_dims=7)
    with pytest.raises(ValueError, match="n_dims=10"):
        ops.rope(x, pos, n_dims=10)
    with pytest.raises(ValueError, match="'sideways'"):
        ops.rope(x, pos, mode="sideways")
    with pytest.raises(ValueError, match=r"positions.shape=\(3,\) but x.shape\[0\]=2"):
        ops.rope(x, np.arange(3))
    with pytest.raises(ValueError, match="float"):
        ops.rope(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="3-D"):
        ops.rope(np.zeros((2, 8), np.float32), pos)
    with pytest.raises(ValueError, match="base"):
        ops.rope(x, pos, base=-1.0)


# ---- softmax ----


@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("scale", [1.0, 0.125])
def test_softmax_matches_numpy(isa, shape, scale):
    rng = rng_for("softmax", shape, scale)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = ops.softmax(x, scale=scale)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref_softmax(x, scale), rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("C", [1, 7, 100, 2048])
def test_softmax_masks(isa, C):
    rng = rng_for("softmax-mask", C)
    x = rng.standard_normal((6, C)).astype(np.float32)
    x[rng.random((6, C)) < 0.4] = -np.inf
    x[0, 0] = 1.0  # at least one live entry in row 0
    x[2] = -np.inf  # fully masked row -> zeros, not NaN
    if C > 1:
        x[3, :-1] = -np.inf  # causal-style: only the last entry survives
        x[3, -1] = 0.5
    y = ops.softmax(x)
    assert not np.isnan(y).any()
    assert np.all(y[x == -np.inf] == 0.0)
    assert np.all(y[2] == 0.0)
    if C > 1:
        assert y[3, -1] == 1.0
    np.testing.assert_allclose(y, ref_softmax(x), rtol=1e-5, atol=1e-30)


def test_softmax_large_magnitudes(isa):
    x = np.array(
        [
            [1e30, 1e30 - 1e24, -1e30, 0.0],  # huge values: no overflow
            [1e4, 1e4 + 1.0, 1e4 - 2.0, -1e4],  # large offset: max subtracted first
            [-1000.0, -999.0, -1001.0, -np.inf],
        ],
        np.float32,
    )
    y = ops.softmax(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref_softmax(x), rtol=1e-5, atol=1e-30)


def test_softmax_threads_and_errors(isa):
    x = rng_for("softmax-threads").standard_normal((50, 640)).astype(np.float32)
    assert np.array_equal(ops.softmax(x, threads=1), ops.softmax(x, threads=2))
    with pytest.raises(ValueError, match="axis=0"):
        ops.softmax(x, axis=0)
    assert np.array_equal(ops.softmax(x, axis=1), ops.softmax(x))
    with pytest.raises(ValueError, match="float32"):
        ops.softmax(x.astype(np.float16))


def test_isa_variants_bit_identical():
    """Every ISA performs the canonical float evaluation of nn_ref.cpp: identical bits."""
    rng = rng_for("agree")
    x = (rng.standard_normal((7, 2049)) * 3).astype(np.float32)
    w = rng.standard_normal(2049).astype(np.float32)
    pos = np.arange(7, dtype=np.int32) * 4099
    heads = np.ascontiguousarray(x[:, None, :2048])  # (T=7, H=1, D=2048)
    outs = {}
    for isa in pylm.available_isas():
        with pylm.use_isa(isa):
            outs[isa] = (ops.rmsnorm(x, w), ops.softmax(x), ops.rope(heads, pos))
    for isa, got in outs.items():
        for a, b in zip(got, outs["scalar"]):
            np.testing.assert_array_equal(a, b, err_msg=isa)
