"""The training loop: learning, exact checkpoint/resume, early stopping, schedule, data
windows, and GGUF export (pylm.load and llama.cpp logits == the training forward)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pylm
from pylm.train import (
    ByteTokenizer,
    LlamaConfig,
    LlamaModel,
    Trainer,
    Windows,
    cosine_lr,
    split,
    tokenize,
)
from pylm.train.export import export_gguf
from pylm.train.optim import clip_scale

TINY = LlamaConfig(vocab=24, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn=48, context=12)


def counting(n_tokens: int, vocab: int = 24, period: int = 24) -> np.ndarray:
    return (np.arange(n_tokens) % period % vocab).astype(np.int32)


def test_learns_a_sequence():
    tr = Trainer(TINY, counting(2000), batch_size=4, lr=1e-2, max_steps=80, warmup=5,
                 progress=False, threads=1)
    h = tr.fit()
    assert h["loss"][0] > 2.5 and h["loss"][-1] < 0.3
    assert all(math.isfinite(x) for x in h["grad_norm"])


def test_resume_is_exact(tmp_path):
    kw = {"batch_size": 3, "lr": 3e-3, "max_steps": 20, "warmup": 3, "eval_every": 5,
          "progress": False, "threads": 1}
    data, val = counting(800, period=17), counting(200, period=17)
    a = Trainer(TINY, data, val, tokenizer=ByteTokenizer(), checkpoint=tmp_path / "ck.npz", **kw)
    a.fit(max_steps=10)
    b = Trainer.resume(tmp_path / "ck.npz", data, val, progress=False, threads=1)
    assert b.step_num == 10 and b.opt.t == 10
    text = "resumé: ok"  # the saved tokenizer encodes as the original
    assert list(b.tokenizer.encode(text)) == ByteTokenizer().encode(text)
    a.fit()
    b.fit()
    assert a.step_num == b.step_num == 20
    assert np.array_equal(a.model.params.data, b.model.params.data)
    assert a.history["loss"] == b.history["loss"]
    assert a.history["val_loss"] == b.history["val_loss"]


def test_early_stopping_restores_best():
    # Train on one pattern, validate on another: validation stops improving quickly.
    train = counting(3000, period=7)
    val = (np.arange(600) * 5 % 11).astype(np.int32)
    tr = Trainer(TINY, train, val, batch_size=4, lr=2e-2, max_steps=400, warmup=2, eval_every=4,
                 patience=2, progress=False, threads=1)
    tr.fit()
    assert tr.stopped_early and tr.step_num < 400
    assert tr.best_step == tr.history["val_step"][int(np.argmin(tr.history["val_loss"]))]
    assert np.array_equal(tr.model.params.data, tr.best_params)
    assert tr.evaluate() == pytest.approx(tr.best_val, rel=1e-6)


def test_schedule_and_clip():
    lrs = [cosine_lr(s, 1.0, 10, 110, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == lrs[119] == 0.1
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert clip_scale(0.5, 1.0) == 1.0 and clip_scale(4.0, 1.0) == pytest.approx(0.25)
    assert clip_scale(4.0, None) == 1.0


def test_windows_and_split():
    tok = np.arange(100, dtype=np.int32)
    tr, va = split(tok, 0.1)
    assert len(tr) == 90 and va[0] == 90
    w = Windows(tr, 8)
    ids, tg = w.sample(5, np.random.default_rng(0))
    assert ids.shape == tg.shape == (5, 8) and np.array_equal(tg, ids + 1)
    seq = list(w.sequential(4))  # 11 windows: 2 full batches, the partial one dropped
    assert [x.shape[0] for x, _ in seq] == [4, 4]
    assert [x.shape[0] for x, _ in Windows(tr, 40).sequential(4)] == [2]  # only a partial one
    assert np.array_equal(seq[0][0][1], np.arange(8, 16))
    with pytest.raises(ValueError, match="at least 9 tokens for windows of T = 8"):
        Windows(tok[:8], 8)


def test_windows_with_labels():
    """Given labels (a teacher's predictions, -1 where nothing is learned), windows pair each
    token with the label at its own position, and can start up to the last full window."""
    tok = np.arange(20, dtype=np.int32)
    lab = np.where(tok % 5 == 0, -1, 1000 + tok).astype(np.int32)
    w = Windows(tok, 8, labels=lab)
    assert w.n_windows == 13
    ids, tg = w.sample(64, np.random.default_rng(1))
    assert np.array_equal(tg, np.where(ids % 5 == 0, -1, 1000 + ids))
    assert ids[:, 0].max() == 12
    seq = list(w.sequential(2))
    assert np.array_equal(seq[0][0], [np.arange(8), np.arange(8, 16)])
    assert np.array_equal(seq[0][1][1], lab[8:16])
    Windows(tok[:8], 8, labels=lab[:8])  # exactly one window
    with pytest.raises(ValueError, match="labels has shape"):
        Windows(tok, 8, labels=lab[:-1])


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    text = "héllo\nworld ✓"
    ids = tokenize(text, tok)
    assert ids.dtype == np.int32 and tok.decode(ids) == text and ids.max() <= 256


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    tr = Trainer(TINY, counting(500), counting(100), batch_size=2, max_steps=6, eval_every=3,
                 progress=False)
    tr.fit()
    p = tr.plot(tmp_path / "loss.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- export ----
EXPORT_CFG = LlamaConfig(vocab=257, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=96,
                         context=32, rope_base=1000.0, init_std=0.08)
IDS = [5, 77, 3, 100, 200, 9, 1, 0, 45, 256, 17, 17, 30]


def exported(tmp_path, dtype="F32", tie=False):
    cfg = LlamaConfig(**{**EXPORT_CFG.to_dict(), "tie_embeddings": tie})
    m = LlamaModel(cfg, seed=4)
    r = np.random.default_rng(4)
    for n in m.params:
        if n.endswith("norm.weight"):
            m.params[n][...] = 1 + 0.1 * r.standard_normal(m.params[n].shape)
    path = export_gguf(m, tmp_path / f"m-{dtype}-{tie}.gguf", ByteTokenizer(), dtype)
    return m, path


def test_export_metadata_and_tensors(tmp_path):
    m, path = exported(tmp_path)
    f = pylm.gguf.GGUFFile(path)
    md = f.metadata
    assert md["general.architecture"] == "llama"
    assert md["llama.rope.dimension_count"] == 16 and md["llama.attention.head_count_kv"] == 2
    assert md["llama.feed_forward_length"] == 96 and md["tokenizer.ggml.model"] == "gpt2"
    q = f.tensor_data("blk.1.attn_k.weight")
    assert tuple(f.tensors["blk.1.attn_k.weight"].ne) == (64, 32)
    want = m.params["blk.1.attn_qkv.weight"][64:96]
    assert np.array_equal(np.frombuffer(q, np.float32).reshape(32, 64), want)


def _engine_or_skip():
    if not hasattr(pylm._core, "Engine"):
        pytest.skip("the inference engine is not built in this tree")


@pytest.mark.parametrize("tie", [False, True])
def test_export_logits_match_engine(tmp_path, tie):
    _engine_or_skip()
    m, path = exported(tmp_path, tie=tie)
    want = m.logits(np.array(IDS, np.int32))
    got = pylm.load(path, threads=1).logits(IDS)
    # F32 weights: the engine uses f32 dot products (no activation quantization); measured 3e-7
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_export_f16_and_q8_run(tmp_path):
    _engine_or_skip()
    m, _ = exported(tmp_path)
    want = m.logits(np.array(IDS, np.int32))
    # measured: F16 8e-4, Q8_0 2.3e-2 (8-bit weights and 8-bit activations) of max |logit|
    for dtype, tol in (("F16", 3e-3), ("Q8_0", 4e-2)):
        _, path = exported(tmp_path, dtype)
        got = pylm.load(path, threads=1).logits(IDS)
        assert np.abs(got - want).max() <= tol * np.abs(want).max(), dtype


def test_export_logits_match_llama_cpp(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    m, path = exported(tmp_path)
    want = m.logits(np.array(IDS, np.int32))
    # F32 KV cache: llama.cpp's default F16 cache alone costs ~1e-3.
    llm = llama_cpp.Llama(str(path), logits_all=True, verbose=False, n_ctx=32, type_k=0, type_v=0)
    llm.eval(IDS)
    got = np.array(llm.scores[: len(IDS)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_export_q8_0_loads_in_llama_cpp(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    m, _ = exported(tmp_path)
    want = m.logits(np.array(IDS, np.int32))
    _, path = exported(tmp_path, "Q8_0")
    assert pylm.gguf.GGUFFile(path).tensors["blk.0.attn_q.weight"].qtype == "Q8_0"
    llm = llama_cpp.Llama(str(path), logits_all=True, verbose=False, n_ctx=32, type_k=0, type_v=0)
    llm.eval(IDS)
    got = np.array(llm.scores[: len(IDS)])
    assert np.abs(got - want).max() <= 4e-2 * np.abs(want).max()
