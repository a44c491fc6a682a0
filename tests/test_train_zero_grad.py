"""zero_grad() is deferred: the next backward() overwrites the weight gradients (GEMM beta 0)
and zeroes the rest itself. The result must equal backward into a zero-filled buffer, a second
backward must accumulate, and frozen / norm / embedding gradients must come out right."""

import numpy as np
import pytest

from pylm.train import LlamaConfig, LlamaModel


@pytest.mark.parametrize("tie", [False, True])
def test_deferred_zero_grad_matches_explicit_zeroing(isa, tie):
    cfg = LlamaConfig(vocab=40, d_model=16, n_layers=2, n_heads=2, ffn=24, context=8,
                      tie_embeddings=tie)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 40, (2, 8)).astype(np.int32)
    tg = rng.integers(0, 40, (2, 8)).astype(np.int32)
    m = LlamaModel(cfg, seed=3, threads=2)
    frozen = "blk.0.attn_qkv.weight"
    m.frozen = {frozen, "blk.1.ffn_norm.weight"}

    # reference: explicit zero fill, then accumulate (the old semantics)
    m._grads.data.fill(0.0)
    m.forward(ids, tg)
    m.backward()
    ref1 = m._grads.data.copy()
    m.forward(ids, tg)
    m.backward()
    ref2 = m._grads.data.copy()

    m._grads.data[:] = np.nan  # stale garbage must not leak through
    m.zero_grad()
    m.forward(ids, tg)
    m.backward()
    np.testing.assert_array_equal(m.grads.data, ref1)
    m.forward(ids, tg)
    m.backward()  # no zero_grad: accumulates
    np.testing.assert_array_equal(m.grads.data, ref2)
    assert not m.grads[frozen].any()
    np.testing.assert_allclose(ref2, 2 * ref1, rtol=1e-5, atol=1e-7)


def test_zero_grad_then_read_sees_zeros():
    cfg = LlamaConfig(vocab=16, d_model=8, n_layers=1, n_heads=2, ffn=16, context=4)
    m = LlamaModel(cfg, seed=0)
    ids = np.arange(4, dtype=np.int32)[None]
    m.forward(ids, ids)
    m.backward()
    assert m.grads.data.any()
    m.zero_grad()
    assert not m.grads.data.any()
