"""pylm.ops.matmul against a float64 numpy reference, on every ISA this CPU has."""

from __future__ import annotations

import numpy as np
import pytest

import pylm
from pylm.ops import matmul

# (M, N, K): tiny, odd, decode-sized (M <= 16 takes the unpacked path), microkernel edges
# (14 x 32 and 6 x 16 tiles, +-1), K across the 256-deep blocks and not a multiple of 8/16,
# wide N, M across the 3584-row block.
SHAPES = [
    (1, 1, 1),
    (2, 3, 4),
    (1, 7, 5),
    (3, 100, 33),
    (4, 65, 17),
    (5, 100, 9),
    (6, 16, 8),
    (7, 17, 9),
    (13, 31, 47),
    (14, 32, 256),
    (15, 33, 257),
    (29, 65, 300),
    (16, 70, 33),
    (17, 70, 33),
    (64, 64, 64),
    (100, 50, 1),
    (37, 3, 600),
    (1, 600, 577),
    (6, 4100, 8),
    (3600, 3, 5),
]


def rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def check(c, a64, b64):
    """|c - a @ b| within a float32 rounding bound that grows like sqrt(K)."""
    ref = a64 @ b64
    k = max(a64.shape[-1], 1)
    bound = 1e-6 * np.sqrt(k) * (np.abs(a64) @ np.abs(b64)) + 1e-30
    assert c.dtype == np.float32
    assert c.shape == ref.shape
    err = np.abs(c.astype(np.float64) - ref)
    assert np.all(err <= bound), f"max err {err.max():.3g}, bound {bound.min():.3g}"


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_shapes(isa, M, N, K, transpose_b):
    rng = np.random.default_rng(M * 10007 + N * 101 + K)
    a = rand(rng, M, K)
    b = rand(rng, N, K) if transpose_b else rand(rng, K, N)
    c = matmul(a, b, transpose_b=transpose_b)
    check(c, a.astype(np.float64), (b.T if transpose_b else b).astype(np.float64))


def test_matmul_prefill_shape(isa):
    # SmolLM2-sized projection: 512 tokens, 576 -> 1536.
    rng = np.random.default_rng(7)
    a, w = rand(rng, 512, 576), rand(rng, 1536, 576)
    check(matmul(a, w, transpose_b=True), a.astype(np.float64), w.T.astype(np.float64))
    a2, b2 = rand(rng, 512, 1536), rand(rng, 1536, 576)
    check(matmul(a2, b2), a2.astype(np.float64), b2.astype(np.float64))


@pytest.mark.parametrize("M,N,K", [(3, 40, 19), (37, 45, 300), (20, 1, 7)])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_transpose_a(isa, M, N, K, transpose_b):
    rng = np.random.default_rng(M + N + K)
    a = rand(rng, K, M)  # used as a.T: (M, K)
    b = rand(rng, N, K) if transpose_b else rand(rng, K, N)
    c = matmul(a, b, transpose_b=transpose_b, transpose_a=True)
    check(c, a.T.astype(np.float64), (b.T if transpose_b else b).astype(np.float64))


def test_matmul_weight_gradient_shape(isa):
    # dW = dy^T @ x with a long K: op(B) packed for every K block exceeds one packed block
    # (8 MiB), so N is split into two column blocks; tasks tile rows and columns.
    rng = np.random.default_rng(2050)
    dy, x = rand(rng, 2050, 40), rand(rng, 2050, 1000)
    c1 = matmul(dy, x, transpose_a=True, threads=1)
    check(c1, dy.T.astype(np.float64), x.astype(np.float64))
    np.testing.assert_array_equal(c1, matmul(dy, x, transpose_a=True, threads=2))


def test_matmul_views_without_copy(isa):
    rng = np.random.default_rng(3)
    big = rand(rng, 40, 70)
    a = big[:, 5:35]  # row stride 70, 30 columns
    b = rand(rng, 50, 30).T  # F-ordered (30, 50): maps to transpose_b
    check(matmul(a, b), a.astype(np.float64), b.astype(np.float64))
    at = rand(rng, 30, 9).T  # F-ordered (9, 30)
    check(matmul(at, b), at.astype(np.float64), b.astype(np.float64))
    odd = rand(rng, 30, 20)[::2]  # (15, 20) with a 2-row stride: used as a leading dimension
    w = rand(rng, 20, 8)
    check(matmul(odd, w), odd.astype(np.float64), w.astype(np.float64))
    cols = rand(rng, 12, 20)[:, ::2]  # (12, 10), no contiguous axis: copied
    w2 = rand(rng, 10, 3)
    check(matmul(cols, w2), cols.astype(np.float64), w2.astype(np.float64))


@pytest.mark.parametrize("M", [1, 3, 9, 16, 100])
def test_matmul_threads_identical(isa, M):
    rng = np.random.default_rng(M)
    a, b, w = rand(rng, M, 300), rand(rng, 300, 200), rand(rng, 200, 300)
    for tb, rhs in ((False, b), (True, w)):
        c1 = matmul(a, rhs, transpose_b=tb, threads=1)
        c2 = matmul(a, rhs, transpose_b=tb, threads=2)
        np.testing.assert_array_equal(c1, c2)


def test_matmul_row_vector(isa):
    rng = np.random.default_rng(11)
    x, w = rand(rng, 577), rand(rng, 300, 577)
    y = matmul(x, w, transpose_b=True)
    assert y.shape == (300,)
    check(y[None], x[None].astype(np.float64), w.T.astype(np.float64))


def test_matmul_out_and_accumulate(isa):
    rng = np.random.default_rng(12)
    a, b = rand(rng, 20, 600), rand(rng, 600, 40)  # K spans 3 blocks: beta only on the first
    out = np.full((20, 40), 2.0, np.float32)
    r = matmul(a, b, out=out, accumulate=True)
    assert r is out
    check(out - 2.0, a.astype(np.float64), b.astype(np.float64))
    big = np.zeros((20, 50), np.float32)
    matmul(a, b, out=big[:, 5:45])
    check(big[:, 5:45], a.astype(np.float64), b.astype(np.float64))
    assert not big[:, :5].any() and not big[:, 45:].any()
    x, w = rand(rng, 2, 600), rand(rng, 600, 40)  # the unpacked small-M path
    out2 = np.ones((2, 40), np.float32)
    matmul(x, w, out=out2, accumulate=True)
    check(out2 - 1.0, x.astype(np.float64), w.astype(np.float64))


def test_matmul_empty(isa):
    a, b = np.ones((3, 0), np.float32), np.ones((0, 4), np.float32)
    np.testing.assert_array_equal(matmul(a, b), np.zeros((3, 4), np.float32))
    assert matmul(np.ones((0, 5), np.float32), np.ones((5, 4), np.float32)).shape == (0, 4)


def test_matmul_errors():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        matmul(a, np.ones((5, 6), np.float32))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 6\)\.T"):
        matmul(a, np.ones((4, 6), np.float32), transpose_b=True)
    with pytest.raises(ValueError, match="float32.*float64"):
        matmul(a.astype(np.float64), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="float32.*int32"):
        matmul(a, np.ones((4, 2), np.int32))
    with pytest.raises(ValueError, match=r"2-D.*\(2, 2, 2\)"):
        matmul(a, np.ones((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(3, 3\)"):
        matmul(a, np.ones((4, 2), np.float32), out=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="accumulate"):
        matmul(a, np.ones((4, 2), np.float32), accumulate=True)
    with pytest.raises(ValueError, match="overlaps"):
        sq = np.ones((4, 4), np.float32)
        matmul(sq, sq[:, :2].copy(), out=sq[:, :2])
    with pytest.raises(ValueError, match="threads"):
        matmul(a, np.ones((4, 2), np.float32), threads=-1)


def test_matmul_isas_agree():
    # Each ISA against the scalar reference on the same data (all are float32 products).
    rng = np.random.default_rng(5)
    a, b = rand(rng, 33, 70), rand(rng, 70, 45)
    with pylm.use_isa("scalar"):
        ref = matmul(a, b)
    for name in pylm.available_isas():
        with pylm.use_isa(name):
            np.testing.assert_allclose(matmul(a, b), ref, rtol=1e-5, atol=1e-4)
