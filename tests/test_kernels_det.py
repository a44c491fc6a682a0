"""Cross-ISA determinism of the engine's float kernels (issue 5): RMSNorm, RoPE, softmax, the
activations and fused attention perform ONE canonical float evaluation on every ISA, so scalar,
AVX2 and AVX-512 return bit-identical outputs (odd sizes, tails, masks, special values).
Accuracy against float64 references: test_nn.py, test_act.py, test_attention.py."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import pylm
from pylm import ops

ISAS = pylm.available_isas()


def rng_for(*key) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


def assert_same_on_every_isa(fn):
    """Runs fn under each ISA; every output must equal the scalar one bit for bit."""
    outs = {}
    for isa in ISAS:
        with pylm.use_isa(isa):
            outs[isa] = fn()
    for isa, got in outs.items():
        np.testing.assert_array_equal(got, outs["scalar"], err_msg=f"{isa} vs scalar")
    return outs["scalar"]


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 88.7, 89.0, -87.5, -104.0,
                    -110.0, 100.0, 0.625, -0.625, 1e30, -1e30, 3e38], dtype=np.float32)

UNARY = {
    "exp": lambda x: ops.exp(x),
    "tanh": lambda x: ops.tanh(x),
    "silu": lambda x: ops.silu(x),
    "gelu": lambda x: ops.gelu(x),
    "gelu_erf": lambda x: ops.gelu(x, approximate="none"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 33, 1000, 70001])
def test_unary_activations(name, n):
    x = (rng_for("unary", name, n).standard_normal(n) * 8).astype(np.float32)
    x[: min(n, SPECIAL.size)] = SPECIAL[: min(n, SPECIAL.size)]
    assert_same_on_every_isa(lambda: UNARY[name](x))


@pytest.mark.parametrize("n", [1, 9, 31, 64, 70001])
def test_gated_activations(n):
    rng = rng_for("gated", n)
    gate = (rng.standard_normal(n) * 6).astype(np.float32)
    up = rng.standard_normal(n).astype(np.float32)
    assert_same_on_every_isa(lambda: ops.swiglu(gate, up))
    assert_same_on_every_isa(lambda: ops.geglu(gate, up))


ROW_SHAPES = [(1, 1), (3, 7), (5, 31), (2, 33), (4, 576), (3, 640), (2, 1025), (2, 1055), (1, 4099)]


@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_rmsnorm(shape):
    rng = rng_for("rmsnorm", shape)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    assert_same_on_every_isa(lambda: ops.rmsnorm(x, w, eps=1e-6))
    assert_same_on_every_isa(lambda: ops.rmsnorm(x * np.float32(1e-18), eps=0.0))


@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax(shape):
    rng = rng_for("softmax", shape)
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    x[rng.random(shape) < 0.2] = -np.inf
    x[0] = -np.inf  # a fully masked row
    assert_same_on_every_isa(lambda: ops.softmax(x, scale=0.37))


@pytest.mark.parametrize("mode", ["normal", "neox"])
@pytest.mark.parametrize("T,H,D,n_dims", [(1, 9, 64, 64), (5, 3, 64, 32), (40, 2, 256, 256),
                                          (3, 4, 18, 10), (33, 1, 6, 6)])
def test_rope(mode, T, H, D, n_dims):
    rng = rng_for("rope", mode, T, H, D)
    x = rng.standard_normal((T, H, D)).astype(np.float32)
    pos = rng.integers(0, 40000, T).astype(np.int32)
    assert_same_on_every_isa(lambda: ops.rope(x, pos, mode=mode, n_dims=n_dims, base=1e6))


def test_rope_depends_on_the_position_only():
    """Batch / thread invariance: a token's rotation is the same alone, in a consecutive run
    (prefill) of any length, and for any thread count."""
    rng = rng_for("rope-pos")
    T = 300
    x = rng.standard_normal((T, 2, 64)).astype(np.float32)
    pos = np.arange(1000, 1000 + T, dtype=np.int32)
    whole = ops.rope(x, pos, threads=1)
    np.testing.assert_array_equal(ops.rope(x, pos, threads=4), whole)
    for t in [0, 1, 15, 63, 64, 65, 150, 299]:
        one = ops.rope(x[t : t + 1], pos[t : t + 1], threads=1)
        np.testing.assert_array_equal(one[0], whole[t], err_msg=f"token {t}")
    part = ops.rope(x[7:40], pos[7:40], threads=1)
    np.testing.assert_array_equal(part, whole[7:40])


ATTN_CASES = [
    # T, S, Hq, Hkv, D, window, softcap
    (1, 300, 9, 3, 64, 0, 0.0),  # decode, G = 3: row path
    (1, 700, 4, 1, 256, 0, 0.0),  # Gemma-like decode
    (1, 90, 16, 2, 40, 0, 50.0),  # decode, G = 8: group path
    (37, 37, 9, 3, 64, 0, 0.0),  # prefill: groups of 16 + 5 rows on the row path
    (22, 22, 2, 1, 64, 0, 0.0),  # 16 + 6 rows: two groups
    (20, 50, 4, 1, 256, 8, 0.0),  # sliding window
    (33, 40, 2, 2, 24, 0, 30.0),  # odd D, softcap
    (3, 100, 3, 3, 130, 5, 0.0),  # D > 128, tail chunk of 2
    (19, 19, 2, 2, 300, 0, 0.0),  # D > 256: row path only
    (70, 70, 1, 1, 17, 0, 0.0),
    (2, 2, 12, 1, 8, 0, 0.0),
    (1, 200, 10, 2, 128, 0, 0.0),  # decode, G = 5: row path, 4 + 1 heads in step, D = 128
    (1, 90, 6, 2, 64, 0, 30.0),  # decode, G = 3, softcap
]


@pytest.mark.parametrize("T,S,Hq,Hkv,D,window,softcap", ATTN_CASES)
def test_attention(T, S, Hq, Hkv, D, window, softcap):
    rng = rng_for("attn", T, S, Hq, Hkv, D)
    q = (rng.standard_normal((T, Hq, D)) * 2).astype(np.float32)
    k = rng.standard_normal((S, Hkv, D)).astype(np.float32)
    v = rng.standard_normal((S, Hkv, D)).astype(np.float32)
    out = assert_same_on_every_isa(
        lambda: ops.attention(q, k, v, window=window, softcap=softcap)
    )
    assert np.isfinite(out).all()


def test_attention_non_causal_and_strided():
    rng = rng_for("attn-nc")
    cache = rng.standard_normal((64, 2, 3, 48)).astype(np.float32)  # (S, k/v, Hkv, D)
    q = rng.standard_normal((21, 6, 48)).astype(np.float32)
    k, v = cache[:50, 0], cache[:50, 1]
    assert_same_on_every_isa(lambda: ops.attention(q, k, v, causal=False, scale=0.3))
    assert_same_on_every_isa(lambda: ops.attention(q, k, v, q_pos0=29))
