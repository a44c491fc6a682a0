"""Training ops: native forward vs float64 numpy, native backward vs central finite differences
of the float64 forward (full Jacobian-vector products at tiny shapes, random directional
derivatives at larger ones), on every ISA."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from pylm.train import ops


def rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def fd_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar f at x (float64), element by element."""
    x = x.astype(np.float64).copy()
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        o = flat[i]
        flat[i] = o + eps
        fp = f(x)
        flat[i] = o - eps
        fm = f(x)
        flat[i] = o
        gf[i] = (fp - fm) / (2 * eps)
    return g


def fd_dir(f, x: np.ndarray, u: np.ndarray, eps: float = 1e-6) -> float:
    """Directional derivative of f at x along u (central difference, float64)."""
    x = x.astype(np.float64)
    return (f(x + eps * u) - f(x - eps * u)) / (2 * eps)


def assert_grad(got, want, tol=1e-4):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.abs(got - want).max()
    assert err <= tol * max(1.0, np.abs(want).max()), f"max err {err:.3g} (scale {np.abs(want).max():.3g})"


# ---- float64 references ----
def rmsnorm_ref(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def attention_ref(qkv, B, T, H, Hkv, scale=None):
    D = qkv.shape[1] // (H + 2 * Hkv)
    scale = 1 / math.sqrt(D) if scale is None else scale
    x = qkv.reshape(B, T, H + 2 * Hkv, D)
    q, k, v = x[:, :, :H], x[:, :, H:H + Hkv], x[:, :, H + Hkv:]
    G = H // Hkv
    k, v = np.repeat(k, G, axis=2), np.repeat(v, G, axis=2)
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    lse = (m + np.log(p.sum(-1, keepdims=True)))[..., 0]
    p /= p.sum(-1, keepdims=True)
    o = np.einsum("bhij,bjhd->bihd", p, v).reshape(B * T, H * D)
    return o, lse


def rope_ref(x, T, n_heads, D, base, inverse=False):
    N = x.shape[0]
    i = np.arange(D // 2)
    inv = base ** (-2.0 * i / D)
    ang = (np.arange(N) % T)[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :] * (-1 if inverse else 1)
    y = x.copy()
    h = y[:, : n_heads * D].reshape(N, n_heads, D // 2, 2)
    x0, x1 = h[..., 0].copy(), h[..., 1].copy()
    h[..., 0] = x0 * c - x1 * s
    h[..., 1] = x0 * s + x1 * c
    y[:, : n_heads * D] = h.reshape(N, n_heads * D)
    return y


def swiglu_ref(gu):
    F = gu.shape[1] // 2
    g, u = gu[:, :F], gu[:, F:]
    return g / (1 + np.exp(-g)) * u


def xent_ref(z, t):
    m = z.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[:, 0]
    keep = t >= 0
    return np.where(keep, lse - z[np.arange(len(t)), np.where(keep, t, 0)], 0.0)


# ---- RMSNorm ----
def test_rmsnorm(isa):
    r = rng("rmsnorm")
    R, C, eps = 5, 19, 1e-5
    x = r.standard_normal((R, C)).astype(np.float32)
    w = (1 + 0.3 * r.standard_normal(C)).astype(np.float32)
    dy = r.standard_normal((R, C))
    y, rstd = ops.rmsnorm_fwd(x, w, eps)
    np.testing.assert_allclose(y, rmsnorm_ref(x.astype(np.float64), w, eps), rtol=2e-6, atol=2e-6)
    dx0 = r.standard_normal((R, C)).astype(np.float32)  # accumulation target
    dx, dw = ops.rmsnorm_bwd(x, w, rstd, dy.astype(np.float32), dx=dx0.copy())
    gx = fd_grad(lambda xx: (rmsnorm_ref(xx, w, eps) * dy).sum(), x)
    gw = fd_grad(lambda ww: (rmsnorm_ref(x.astype(np.float64), ww, eps) * dy).sum(), w)
    assert_grad(dx - dx0, gx)
    assert_grad(dw, gw)


def test_rmsnorm_large_rows(isa):
    r = rng("rmsnorm-large")
    R, C = 70, 300  # several row chunks (dw partial sums) and vector tails
    x = r.standard_normal((R, C)).astype(np.float32)
    w = r.standard_normal(C).astype(np.float32)
    dy = r.standard_normal((R, C))
    _, rstd = ops.rmsnorm_fwd(x, w, 1e-6)
    dx, dw = ops.rmsnorm_bwd(x, w, rstd, dy.astype(np.float32))
    for name, arr, f in (("x", x, lambda a: (rmsnorm_ref(a, w, 1e-6) * dy).sum()),
                         ("w", w, lambda a: (rmsnorm_ref(x.astype(np.float64), a, 1e-6) * dy).sum())):
        u = r.standard_normal(arr.shape)
        got = float(((dx if name == "x" else dw) * u).sum())
        want = fd_dir(f, arr, u)
        assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), (name, got, want)


# ---- linear ----
@pytest.mark.parametrize("N,IN,OUT", [(3, 5, 4), (37, 40, 33)])
def test_linear(isa, N, IN, OUT):
    r = rng(f"linear{N}")
    x = r.standard_normal((N, IN)).astype(np.float32)
    W = r.standard_normal((OUT, IN)).astype(np.float32)
    b = r.standard_normal(OUT).astype(np.float32)
    dy = r.standard_normal((N, OUT))
    y = ops.linear_fwd(x, W, b)
    np.testing.assert_allclose(y, x.astype(np.float64) @ W.T.astype(np.float64) + b, rtol=1e-5, atol=1e-4)
    dx, dW, db = ops.linear_bwd(x, W, dy.astype(np.float32), bias=True)
    x64, W64 = x.astype(np.float64), W.astype(np.float64)
    if N * IN <= 64:  # full finite differences
        assert_grad(dx, fd_grad(lambda a: ((a @ W64.T + b) * dy).sum(), x))
        assert_grad(dW, fd_grad(lambda a: ((x64 @ a.T + b) * dy).sum(), W))
        assert_grad(db, fd_grad(lambda a: ((x64 @ W64.T + a) * dy).sum(), b))
    else:  # the closed forms the finite differences confirm above
        np.testing.assert_allclose(dx, dy @ W64, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(dW, dy.T @ x64, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(db, dy.sum(0), rtol=1e-5, atol=1e-4)


# ---- attention ----
@pytest.mark.parametrize("B,T,H,Hkv,D", [(2, 5, 2, 1, 4), (1, 6, 4, 2, 2)])
def test_attention_fd(isa, B, T, H, Hkv, D):
    r = rng(f"attn{B}{T}{H}{Hkv}{D}")
    qkv = r.standard_normal((B * T, (H + 2 * Hkv) * D)).astype(np.float32)
    do = r.standard_normal((B * T, H * D))
    o, lse = ops.attention_fwd(qkv, B, T, H, Hkv)
    o_ref, lse_ref = attention_ref(qkv.astype(np.float64), B, T, H, Hkv)
    np.testing.assert_allclose(o, o_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lse, lse_ref, rtol=1e-5, atol=1e-5)
    dqkv = ops.attention_bwd(qkv, o, lse, do.astype(np.float32), B, T, H, Hkv)
    g = fd_grad(lambda a: (attention_ref(a, B, T, H, Hkv)[0] * do).sum(), qkv)
    assert_grad(dqkv, g)


@pytest.mark.parametrize("B,T,H,Hkv,D", [(2, 37, 4, 2, 16), (1, 70, 3, 3, 24), (1, 9, 6, 1, 64)])
def test_attention_directional(isa, B, T, H, Hkv, D):
    r = rng(f"attn-dir{B}{T}{H}{Hkv}{D}")
    qkv = r.standard_normal((B * T, (H + 2 * Hkv) * D)).astype(np.float32)
    do = r.standard_normal((B * T, H * D))
    o, lse = ops.attention_fwd(qkv, B, T, H, Hkv, scale=0.3)
    o_ref, lse_ref = attention_ref(qkv.astype(np.float64), B, T, H, Hkv, scale=0.3)
    np.testing.assert_allclose(o, o_ref, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(lse, lse_ref, rtol=1e-5, atol=2e-5)
    dqkv = ops.attention_bwd(qkv, o, lse, do.astype(np.float32), B, T, H, Hkv, scale=0.3)
    f = lambda a: (attention_ref(a, B, T, H, Hkv, scale=0.3)[0] * do).sum()
    for _ in range(3):
        u = r.standard_normal(qkv.shape)
        want = fd_dir(f, qkv, u)
        got = float((dqkv.astype(np.float64) * u).sum())
        assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), (got, want)


def test_attention_threads_agree(isa):
    r = rng("attn-threads")
    B, T, H, Hkv = 3, 33, 4, 2
    qkv = r.standard_normal((B * T, (H + 2 * Hkv) * 8)).astype(np.float32)
    do = r.standard_normal((B * T, H * 8)).astype(np.float32)
    o1, l1 = ops.attention_fwd(qkv, B, T, H, Hkv, threads=1)
    o2, l2 = ops.attention_fwd(qkv, B, T, H, Hkv, threads=3)
    assert np.array_equal(o1, o2) and np.array_equal(l1, l2)
    d1 = ops.attention_bwd(qkv, o1, l1, do, B, T, H, Hkv, threads=1)
    d2 = ops.attention_bwd(qkv, o1, l1, do, B, T, H, Hkv, threads=3)
    assert np.array_equal(d1, d2)


# ---- RoPE ----
def test_rope(isa):
    r = rng("rope")
    B, T, Hr, D, extra = 2, 5, 3, 8, 8  # rotate 3 heads, leave 8 more columns alone
    x = r.standard_normal((B * T, Hr * D + extra)).astype(np.float32)
    cos, sin = ops.rope_tables(T, D, base=100.0)
    y = ops.rope(x.copy(), T, Hr, D, cos, sin)
    np.testing.assert_allclose(y, rope_ref(x.astype(np.float64), T, Hr, D, 100.0), rtol=1e-6, atol=1e-6)
    dy = r.standard_normal(x.shape)
    dx = ops.rope(dy.astype(np.float32), T, Hr, D, cos, sin, inverse=True)
    g = fd_grad(lambda a: (rope_ref(a, T, Hr, D, 100.0) * dy).sum(), x)
    assert_grad(dx, g)
    # the inverse undoes the rotation
    np.testing.assert_allclose(ops.rope(y, T, Hr, D, cos, sin, inverse=True), x, atol=1e-6)


def test_rope_threads_agree(isa):
    r = rng("rope-threads")
    B, T, H, D = 3, 64, 6, 32  # several row chunks: runs on every worker
    x = r.standard_normal((B * T, H * D + 16)).astype(np.float32)
    cos, sin = ops.rope_tables(T, D)
    y1 = ops.rope(x.copy(), T, H, D, cos, sin, threads=1)
    y3 = ops.rope(x.copy(), T, H, D, cos, sin, threads=3)
    assert np.array_equal(y1, y3)
    np.testing.assert_allclose(y1, rope_ref(x.astype(np.float64), T, H, D, 10000.0), atol=2e-5)


def test_rope_tables_match_engine_formula():
    cos, sin = ops.rope_tables(300, 64, base=10000.0)
    ang = 299 * 10000.0 ** (-2.0 * 31 / 64)
    assert cos[299, 31] == np.float32(math.cos(ang)) and sin[299, 31] == np.float32(math.sin(ang))


# ---- SwiGLU ----
def test_swiglu(isa):
    r = rng("swiglu")
    N, F = 4, 11
    gu = (2 * r.standard_normal((N, 2 * F))).astype(np.float32)
    dh = r.standard_normal((N, F))
    h = ops.swiglu_fwd(gu)
    np.testing.assert_allclose(h, swiglu_ref(gu.astype(np.float64)), rtol=2e-6, atol=2e-6)
    dgu = ops.swiglu_bwd(gu, dh.astype(np.float32))
    assert_grad(dgu, fd_grad(lambda a: (swiglu_ref(a) * dh).sum(), gu))


# ---- embedding ----
def test_embedding(isa):
    r = rng("embed")
    V, C = 7, 70
    W = r.standard_normal((V, C)).astype(np.float32)
    ids = np.array([3, 0, 3, 6, 3, 1], np.int32)  # repeats accumulate
    out = ops.embedding_fwd(ids, W)
    assert np.array_equal(out, W[ids])
    dout = r.standard_normal((len(ids), C))
    dW = ops.embedding_bwd(ids, dout.astype(np.float32), np.zeros((V, C), np.float32))
    assert_grad(dW, fd_grad(lambda a: (a[ids] * dout).sum(), W))
    with pytest.raises(IndexError, match="id 7"):
        ops.embedding_fwd(np.array([1, 7], np.int32), W)


# ---- softmax + cross-entropy ----
@pytest.mark.parametrize("V", [5, 37, 1500])
def test_softmax_xent(isa, V):
    r = rng(f"xent{V}")
    N = 4
    z = (3 * r.standard_normal((N, V))).astype(np.float32)
    t = np.array([0, V - 1, -1, V // 2], np.int32)  # row 2 ignored
    losses = ops.softmax_xent(z.copy(), t, grad=False)
    np.testing.assert_allclose(losses, xent_ref(z.astype(np.float64), t), rtol=1e-5, atol=1e-5)
    g = z.copy()
    losses2 = ops.softmax_xent(g, t)  # mean over the 3 counted rows
    np.testing.assert_allclose(losses2, losses, rtol=1e-6)
    f = lambda a: xent_ref(a, t).sum() / 3
    if V <= 37:
        assert_grad(g, fd_grad(f, z))
    else:
        u = r.standard_normal(z.shape)
        want, got = fd_dir(f, z, u), float((g.astype(np.float64) * u).sum())
        assert abs(got - want) <= 1e-4 * max(1.0, abs(want))
    assert not g[2].any()
    with pytest.raises(IndexError, match=f"target {V}"):
        ops.softmax_xent(z.copy(), np.array([0, V, 0, 0], np.int32))


# ---- residual add, squared error ----
def test_add_and_sq_err(isa):
    r = rng("add")
    a, b = r.standard_normal(37).astype(np.float32), r.standard_normal(37).astype(np.float32)
    assert np.array_equal(ops.add(a, b), a + b)
    loss, dy = ops.sq_err(a, b)
    assert loss == pytest.approx(float(((a.astype(np.float64) - b) ** 2).sum()), rel=1e-6)
    assert_grad(dy, fd_grad(lambda y: ((y - b) ** 2).sum(), a))


# ---- optimizers ----
def test_adamw_matches_formula(isa):
    r = rng("adamw")
    n = 1000
    p = r.standard_normal(n).astype(np.float32)
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    p64, m64, v64 = p.astype(np.float64), np.zeros(n), np.zeros(n)
    lr, b1, b2, eps, wd, gs = 1e-2, 0.9, 0.95, 1e-8, 0.1, 0.5
    for step in range(1, 4):
        g = r.standard_normal(n).astype(np.float32)
        ops.adamw(p, g, m, v, lr, step, b1, b2, eps, wd, grad_scale=gs)
        gg = g.astype(np.float64) * gs
        p64 *= 1 - lr * wd
        m64 = b1 * m64 + (1 - b1) * gg
        v64 = b2 * v64 + (1 - b2) * gg * gg
        p64 -= lr / (1 - b1**step) * m64 / (np.sqrt(v64) / math.sqrt(1 - b2**step) + eps)
    np.testing.assert_allclose(p, p64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m, m64, rtol=1e-5, atol=1e-7)


def test_sgd_sum_squares_scale(isa):
    r = rng("sgd")
    p = r.standard_normal(100_001).astype(np.float32)
    g = r.standard_normal(100_001).astype(np.float32)
    want = p - np.float32(0.1) * g
    ops.sgd(p, g, 0.1)
    np.testing.assert_allclose(p, want, rtol=1e-6, atol=1e-7)
    assert ops.sum_squares(g) == pytest.approx(float((g.astype(np.float64) ** 2).sum()), rel=1e-6)
    assert ops.sum_squares(g, threads=1) == ops.sum_squares(g, threads=3)
    np.testing.assert_allclose(ops.scale(g.copy(), 0.5), g * 0.5)


# ---- argument checks ----
def test_errors_name_the_value():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight: expected shape \(4,\), got \(5,\)"):
        ops.rmsnorm_fwd(x, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="x.shape\\[1\\]=4 but weight.shape\\[1\\]=3"):
        ops.linear_fwd(x, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="n_heads=3 is not a multiple of n_kv_heads=2"):
        ops.attention_fwd(np.zeros((4, 56), np.float32), 1, 4, 3, 2)
    with pytest.raises(ValueError, match="does not fit"):
        ops.attention_fwd(np.zeros((5, 32), np.float32), 1, 4, 2, 1)
    with pytest.raises(ValueError, match="expected dtype int32"):
        ops._t.embedding_fwd(np.zeros(2, np.int64), x, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="step must be >= 1, got 0"):
        ops.adamw(np.zeros(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32),
                  np.zeros(2, np.float32), 0.1, 0)


def test_row_ops_threads_agree(isa):
    """Shapes with many row chunks, so every worker thread runs: results equal 1 thread's."""
    r = rng("threads")
    gu = r.standard_normal((300, 2 * 96)).astype(np.float32)
    dh = r.standard_normal((300, 96)).astype(np.float32)
    for th in (1, 3):
        h, dgu = ops.swiglu_fwd(gu, threads=th), ops.swiglu_bwd(gu, dh, threads=th)
        if th == 1:
            h1, dgu1 = h, dgu
    assert np.array_equal(h, h1) and np.array_equal(dgu, dgu1)
    z = r.standard_normal((100, 700)).astype(np.float32)
    t = r.integers(0, 700, 100).astype(np.int32)
    g1, g3 = z.copy(), z.copy()
    l1, l3 = ops.softmax_xent(g1, t, threads=1), ops.softmax_xent(g3, t, threads=3)
    assert np.array_equal(l1, l3) and np.array_equal(g1, g3)
    x = r.standard_normal((200, 64)).astype(np.float32)
    w = r.standard_normal(64).astype(np.float32)
    (y1, s1), (y3, s3) = ops.rmsnorm_fwd(x, w, threads=1), ops.rmsnorm_fwd(x, w, threads=3)
    assert np.array_equal(y1, y3) and np.array_equal(s1, s3)
    d1 = ops.rmsnorm_bwd(x, w, s1, y1, threads=1)
    d3 = ops.rmsnorm_bwd(x, w, s1, y1, threads=3)
    assert np.array_equal(d1[0], d3[0]) and np.array_equal(d1[1], d3[1])
