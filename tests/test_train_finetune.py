"""Fine-tuning: a llama GGUF loads back as trainable float32 parameters (exact for F32,
dequantized for quantized files), and training a subset leaves the other weights untouched."""

from __future__ import annotations

import numpy as np
import pytest

import pylm
from pylm.train import ByteTokenizer, LlamaConfig, LlamaModel, Trainer
from pylm.train.export import export_gguf

CFG = LlamaConfig(vocab=257, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=96,
                  context=32, rope_base=1000.0, init_std=0.08)


@pytest.mark.parametrize("dtype", ["F32", "Q8_0"])
def test_gguf_round_trip(tmp_path, dtype):
    m = LlamaModel(CFG, seed=5)
    path = export_gguf(m, tmp_path / "m.gguf", ByteTokenizer(), dtype)
    m2, tok = LlamaModel.from_gguf(path, context=32)
    assert m2.config == LlamaConfig(**{**CFG.to_dict(), "init_std": 0.02}) and tok.n_vocab == 257
    if dtype == "F32":
        assert np.array_equal(m2.params.data, m.params.data)
    else:  # Q8_0: |error| <= half a quantization step, max|block| / 127 / 2
        err = np.abs(m2.params.data - m.params.data).max()
        assert 0 < err <= np.abs(m.params.data).max() / 127
    ids = np.array([3, 70, 5, 200, 9], np.int32)
    tol = 1e-6 if dtype == "F32" else 2e-2
    np.testing.assert_allclose(m2.logits(ids), m.logits(ids), atol=tol * np.abs(m.logits(ids)).max())


def test_train_a_subset(tmp_path):
    m = LlamaModel(CFG, seed=6)
    before = {n: m.params[n].copy() for n in m.params}
    data = (np.arange(2000) % 50).astype(np.int32)
    tr = Trainer(CFG, data, model=m, batch_size=2, max_steps=4, lr=1e-2, warmup=1,
                 trainable=["blk.1.*", "output_norm.weight"], progress=False, threads=1)
    tr.fit()
    for n in m.params:
        changed = not np.array_equal(before[n], m.params[n])
        assert changed == (n.startswith("blk.1.") or n == "output_norm.weight"), n
    # no gradient was even computed for the frozen weights
    assert not tr.model.grads["blk.0.attn_qkv.weight"].any()
    assert not tr.model.grads["token_embd.weight"].any()
    with pytest.raises(ValueError, match="matches no parameter"):
        Trainer(CFG, data, trainable=["nope.*"], progress=False)


@pytest.mark.slow
def test_smollm2_forward_matches_engine_and_finetunes(smollm2_path):
    m, tok = LlamaModel.from_gguf(smollm2_path, context=32, threads=2)
    assert m.config.tie_embeddings and m.config.n_kv_heads == 3
    ids = tok.encode("The capital of France is Paris. The capital of Germany is")
    lg = m.logits(np.array(ids, np.int32))
    ref = pylm.load(smollm2_path, threads=2).logits(ids)
    # The engine runs Q4_1 weights against 8-bit activations; training uses float32 ones.
    assert (lg.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    assert np.abs(lg - ref).max() <= 0.08 * np.abs(ref).max()
    assert tok.decode([int(lg[-1].argmax())]) == " Berlin"
    # A few steps on the norms only lower the loss on a sentence.
    sent = np.array(tok.encode(" the quick brown fox jumps over the lazy dog." * 4), np.int32)
    tr = Trainer(m.config, sent, model=m, batch_size=1, max_steps=3, lr=2e-3, warmup=1,
                 trainable=["*norm.weight"], progress=False)
    h = tr.fit()
    assert h["loss"][-1] < h["loss"][0]
