"""pylm.ops.attention against an explicit float64 softmax with masks, on every ISA."""

from __future__ import annotations

import numpy as np
import pytest

from pylm.ops import attention


def reference(q, k, v, scale=None, causal=True, window=0, q_pos0=None, softcap=0.0):
    """Materialized scores, masks and softmax in float64 (rows with no key -> 0)."""
    T, Hq, D = q.shape
    S, Hkv, _ = k.shape
    G = Hq // Hkv
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    q_pos0 = (S - T if causal else 0) if q_pos0 is None else q_pos0
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    pos = q_pos0 + np.arange(T)[:, None]
    j = np.arange(S)[None, :]
    mask = np.ones((T, S), bool)
    if causal:
        mask &= j <= pos
    if window > 0:
        mask &= pos - j < window
    out = np.zeros((T, Hq, D))
    for h in range(Hq):
        s = q[:, h] @ k[:, h // G].T * scale
        if softcap > 0:
            s = softcap * np.tanh(s / softcap)
        s = np.where(mask, s, -np.inf)
        mx = s.max(axis=1, keepdims=True) if S else np.zeros((T, 1))
        mx = np.where(np.isfinite(mx), mx, 0.0)
        e = np.exp(s - mx) * mask
        den = e.sum(axis=1, keepdims=True)
        out[:, h] = np.where(den > 0, e @ v[:, h // G] / np.where(den > 0, den, 1.0), 0.0)
    return out


def qkv(seed, T, S, Hq, Hkv, D):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((T, Hq, D), dtype=np.float32)
    k = rng.standard_normal((S, Hkv, D), dtype=np.float32)
    v = rng.standard_normal((S, Hkv, D), dtype=np.float32)
    return q, k, v


def check(out, ref):
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))


# (T, S, Hq, Hkv, D): SmolLM2 (9/3, D=64), Gemma 3 (4/1, D=256), a 4/2 D=128 model, odd D.
PREFILL = [
    (1, 1, 1, 1, 8),
    (50, 50, 9, 3, 64),
    (37, 37, 4, 1, 256),
    (45, 45, 4, 2, 128),
    (33, 33, 6, 6, 100),
    (20, 20, 2, 1, 3),
    (19, 19, 3, 1, 17),
]


@pytest.mark.parametrize("T,S,Hq,Hkv,D", PREFILL)
def test_prefill(isa, T, S, Hq, Hkv, D):
    q, k, v = qkv(T * 7 + D, T, S, Hq, Hkv, D)
    check(attention(q, k, v), reference(q, k, v))


@pytest.mark.parametrize("S", [1, 17, 64, 65, 600])
@pytest.mark.parametrize(
    "Hq,Hkv,D", [(9, 3, 64), (4, 1, 256), (8, 8, 128), (16, 1, 64), (12, 2, 80)]
)
def test_decode(isa, S, Hq, Hkv, D):
    q, k, v = qkv(S + D, 1, S, Hq, Hkv, D)
    check(attention(q, k, v), reference(q, k, v))


@pytest.mark.parametrize("q_pos0", [0, 10, 32, 35])
def test_q_pos0(isa, q_pos0):
    # Queries anywhere relative to the keys; past the last key they see all of them.
    q, k, v = qkv(q_pos0, 8, 40, 4, 2, 64)
    check(attention(q, k, v, q_pos0=q_pos0), reference(q, k, v, q_pos0=q_pos0))


@pytest.mark.parametrize(
    "T,S,Hq,Hkv,D,window",
    [
        (40, 700, 4, 1, 256, 512),  # Gemma 3 local layers, last 40 positions
        (1, 700, 9, 3, 64, 512),  # decode past the window
        (1, 300, 16, 2, 64, 100),  # decode, 8 heads per kv head
        (100, 100, 9, 3, 64, 16),
        (30, 30, 4, 2, 128, 3),
        (30, 30, 2, 1, 64, 1),  # only itself
        (20, 20, 2, 1, 64, 50),  # window longer than the sequence
    ],
)
def test_sliding_window(isa, T, S, Hq, Hkv, D, window):
    q, k, v = qkv(window + T, T, S, Hq, Hkv, D)
    check(attention(q, k, v, window=window), reference(q, k, v, window=window))


@pytest.mark.parametrize("softcap", [50.0, 2.0, 0.3])
def test_softcap(isa, softcap):
    q, k, v = qkv(3, 30, 30, 4, 1, 256)
    q *= 3.0  # scores large enough for the cap to matter
    check(attention(q, k, v, softcap=softcap), reference(q, k, v, softcap=softcap))
    check(
        attention(q, k, v, softcap=softcap, window=7), reference(q, k, v, softcap=softcap, window=7)
    )


def test_scale_and_non_causal(isa):
    q, k, v = qkv(4, 13, 29, 6, 2, 64)
    check(attention(q, k, v, scale=0.3, causal=False), reference(q, k, v, scale=0.3, causal=False))
    q2, k2, v2 = qkv(5, 20, 20, 2, 2, 100)
    check(attention(q2, k2, v2, causal=False), reference(q2, k2, v2, causal=False))


def test_no_visible_keys_gives_zeros(isa):
    q, k, v = qkv(6, 3, 10, 2, 1, 64)
    out = attention(q, k, v, q_pos0=20, window=5)  # positions 20..22 see keys > 15: none exist
    np.testing.assert_array_equal(out, np.zeros_like(out))
    empty = attention(q, k[:0], v[:0], q_pos0=0)
    np.testing.assert_array_equal(empty, np.zeros_like(empty))


def test_strided_cache_views(isa):
    # q, k, v as slices of one fused (T, Hq + 2 * Hkv, D) projection, and K/V as the first S rows
    # of a longer cache: token and head strides pass through without copies.
    rng = np.random.default_rng(8)
    T, Hq, Hkv, D = 24, 9, 3, 64
    fused = rng.standard_normal((T, Hq + 2 * Hkv, D), dtype=np.float32)
    q, k, v = fused[:, :Hq], fused[:, Hq : Hq + Hkv], fused[:, Hq + Hkv :]
    check(attention(q, k, v), reference(q, k, v))
    cache = rng.standard_normal((2, 100, Hkv, D), dtype=np.float32)
    kc, vc = cache[0, :60], cache[1, :60]
    qd = rng.standard_normal((1, Hq, D), dtype=np.float32)
    check(attention(qd, kc, vc), reference(qd, kc, vc))
    kh = rng.standard_normal((60, 2 * Hkv, D), dtype=np.float32)[:, ::2]  # head stride 2 * D
    check(attention(qd, kh, vc), reference(qd, kh, vc))


@pytest.mark.parametrize("T,S", [(70, 70), (1, 600), (5, 300)])
def test_threads_identical(isa, T, S):
    q, k, v = qkv(T + S, T, S, 9, 3, 64)
    a = attention(q, k, v, threads=1, window=200)
    b = attention(q, k, v, threads=2, window=200)
    np.testing.assert_array_equal(a, b)


def test_errors():
    q, k, v = qkv(0, 4, 6, 4, 2, 8)
    with pytest.raises(ValueError, match=r"Hq=4 is not a multiple of Hkv=3.*\(6, 3, 8\)"):
        attention(q, k[:, :1].repeat(3, 1), v[:, :1].repeat(3, 1))
    with pytest.raises(ValueError, match=r"D=8.*D=4"):
        attention(q, k[..., :4], v[..., :4])
    with pytest.raises(ValueError, match=r"k and v shapes differ.*\(5, 2, 8\)"):
        attention(q, k, v[:5])
    with pytest.raises(ValueError, match=r"3-D.*\(4, 32\)"):
        attention(q.reshape(4, 32), k, v)
    with pytest.raises(ValueError, match="float32.*float64"):
        attention(q.astype(np.float64), k, v)
    with pytest.raises(ValueError, match="causal"):
        attention(q, k, v, causal=False, window=2)
    with pytest.raises(ValueError, match="window"):
        attention(q, k, v, window=-1)
    with pytest.raises(ValueError, match="q_pos0"):
        attention(q, k, v, q_pos0=-1)
    with pytest.raises(ValueError, match=r"T=4 .*S=2.*q_pos0"):
        attention(q, k[:2], v[:2])
    with pytest.raises(ValueError, match="softcap"):
        attention(q, k, v, softcap=-1.0)
