"""GPU training (pylm.train.cuda_model, cuda/train/*) against the CPU training path.

Without a usable GPU only the error paths run: asking for CUDA is an error, never a CPU
fallback. With one: each training op against its CPU twin (pylm.train.ops) on the same inputs,
one full step (loss, every gradient, the AdamW update) against LlamaModel in fp32, bf16
training tracking fp32, and `pylm train --device cuda` end to end.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import pylm.cuda
from pylm.train import LlamaConfig, LlamaModel, Trainer
from pylm.train import ops as cpu
from pylm.train.cuda_model import CudaLlamaModel, parse_device

pytestmark = pytest.mark.cuda

needs_gpu = pytest.mark.skipif(not pylm.cuda.is_available(), reason="no usable CUDA device")

# head_dim 64 (the flash kernels' smallest), grouped-query, T not a multiple of the 32-row tiles
CFG = LlamaConfig(vocab=96, d_model=128, n_layers=2, n_heads=2, n_kv_heads=1, ffn=192,
                  context=40)


def _batch(cfg, B=3, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab, (B, cfg.context)).astype(np.int32)
    tg = rng.integers(0, cfg.vocab, (B, cfg.context)).astype(np.int32)
    tg[0, :3] = -1  # ignored targets
    return ids, tg


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _nrel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ---- what runs without a GPU ----

def test_parse_device():
    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("CUDA:1") == ("cuda", 1)
    with pytest.raises(ValueError, match="gpu"):
        parse_device("gpu")


@pytest.mark.skipif(pylm.cuda.is_available(), reason="a GPU is available")
def test_no_gpu_is_an_error_not_a_fallback(tmp_path):
    data = np.tile(np.arange(16, dtype=np.int32), 32)
    with pytest.raises(RuntimeError):
        Trainer(CFG, data, device="cuda", progress=False, max_steps=2)
    with pytest.raises(RuntimeError):
        CudaLlamaModel(CFG)
    from pylm.cli import main

    txt = tmp_path / "t.txt"
    txt.write_text("hello world " * 50)
    assert main(["train", "--data", str(txt), "--out", str(tmp_path / "m.gguf"), "--device",
                 "cuda", "--steps", "1", "-q"]) != 0
    assert not (tmp_path / "m.gguf").exists()


def test_bad_arguments_before_the_device():
    with pytest.raises(ValueError, match="device"):
        Trainer(CFG, np.zeros(100, np.int32), device="tpu", progress=False)
    bad = LlamaConfig(vocab=32, d_model=64, n_layers=1, n_heads=2, ffn=64, context=8)  # D = 32
    with pytest.raises(ValueError, match="head_dim=32"):
        CudaLlamaModel(bad)


# ---- the ops against their CPU twins (float32 device arrays from torch) ----

@pytest.fixture(scope="module")
def torch():
    t = pytest.importorskip("torch")
    if not pylm.cuda.is_available() or not t.cuda.is_available():
        pytest.skip("needs CUDA torch and a usable device")
    return t


def _dev(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def _host(t):
    import torch

    torch.cuda.synchronize()
    return t.cpu().numpy()


@needs_gpu
def test_rmsnorm_ops(torch):
    from pylm import _cuda

    rng = np.random.default_rng(1)
    R, C = 77, 320
    x = rng.standard_normal((R, C)).astype(np.float32)
    w = rng.standard_normal(C).astype(np.float32)
    dy = rng.standard_normal((R, C)).astype(np.float32)
    y_ref, r_ref = cpu.rmsnorm_fwd(x, w, 1e-5)
    X, W, Y, RS = _dev(torch, x), _dev(torch, w), torch.empty(R, C, device="cuda"), torch.empty(R, device="cuda")
    _cuda.train_rmsnorm_fwd(X, W, Y, RS, 1e-5)
    assert _rel(_host(Y), y_ref) < 1e-5 and _rel(_host(RS), r_ref) < 1e-5
    dx0 = rng.standard_normal((R, C)).astype(np.float32)
    dw0 = rng.standard_normal(C).astype(np.float32)
    dx_ref, dw_ref = cpu.rmsnorm_bwd(x, w, r_ref, dy, dx0.copy(), dw0.copy())
    DX, DW = _dev(torch, dx0), _dev(torch, dw0)
    _cuda.train_rmsnorm_bwd(X, W, _dev(torch, r_ref), _dev(torch, dy), DX, DW, True)
    assert _rel(_host(DX), dx_ref) < 1e-5 and _rel(_host(DW), dw_ref) < 1e-5


@needs_gpu
def test_rope_swiglu_xent_embedding_ops(torch):
    from pylm import _cuda

    rng = np.random.default_rng(2)
    T, H, D, B = 24, 3, 64, 2
    x = rng.standard_normal((B * T, H * D + 16)).astype(np.float32)
    cos, sin = cpu.rope_tables(T, D)
    for inverse in (False, True):
        ref = cpu.rope(x.copy(), T, H, D, cos, sin, inverse)
        X = _dev(torch, x)
        _cuda.train_rope(X, T, H, D, _dev(torch, cos), _dev(torch, sin), inverse)
        assert _rel(_host(X), ref) < 1e-6
    gu = rng.standard_normal((50, 2 * 40)).astype(np.float32)
    dh = rng.standard_normal((50, 40)).astype(np.float32)
    Hh, DG = torch.empty(50, 40, device="cuda"), torch.empty(50, 80, device="cuda")
    _cuda.train_swiglu_fwd(_dev(torch, gu), Hh)
    _cuda.train_swiglu_bwd(_dev(torch, gu), _dev(torch, dh), DG)
    assert _rel(_host(Hh), cpu.swiglu_fwd(gu)) < 1e-6
    assert _rel(_host(DG), cpu.swiglu_bwd(gu, dh)) < 1e-6
    N, V = 37, 1000
    z = (rng.standard_normal((N, V)) * 3).astype(np.float32)
    t = rng.integers(0, V, N).astype(np.int32)
    t[5] = -1
    zr = z.copy()
    loss_ref = cpu.softmax_xent(zr, t, grad=True, grad_scale=0.25)
    Z, L = _dev(torch, z), torch.empty(N, device="cuda")
    _cuda.train_softmax_xent(Z, _dev(torch, t), L, 0.25, True)
    assert _rel(_host(L), loss_ref) < 1e-5
    assert _rel(_host(Z), zr) < 1e-5
    ids = rng.integers(0, 7, 60).astype(np.int32)  # many repeats
    dout = rng.standard_normal((60, 33)).astype(np.float32)
    dw = rng.standard_normal((7, 33)).astype(np.float32)
    ref = cpu.embedding_bwd(ids, dout, dw.copy())
    DW = _dev(torch, dw)
    _cuda.train_embedding_bwd(_dev(torch, ids), _dev(torch, dout), DW)
    assert _rel(_host(DW), ref) < 1e-5


@needs_gpu
@pytest.mark.parametrize("T,H,Hkv,D", [(70, 4, 2, 64), (33, 2, 2, 128)])
def test_attention_bwd(torch, T, H, Hkv, D):
    from pylm import _cuda

    rng = np.random.default_rng(3)
    B = 2
    qkv = rng.standard_normal((B * T, (H + 2 * Hkv) * D)).astype(np.float32)
    out, lse = cpu.attention_fwd(qkv, B, T, H, Hkv)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ref = cpu.attention_bwd(qkv, out, lse, dout, B, T, H, Hkv)
    DQ = torch.empty(qkv.shape, device="cuda")
    _cuda.train_attention_bwd(_dev(torch, qkv), _dev(torch, out), _dev(torch, lse),
                              _dev(torch, dout), DQ, B, T, H, Hkv, 1.0 / math.sqrt(D))
    got = _host(DQ)
    for name, sl in (("dq", slice(0, H * D)), ("dk", slice(H * D, (H + Hkv) * D)),
                     ("dv", slice((H + Hkv) * D, None))):
        assert _rel(got[:, sl], ref[:, sl]) < 1e-4, name


@needs_gpu
def test_adamw_op(torch):
    from pylm import _cuda

    rng = np.random.default_rng(4)
    p, g = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    m, v = rng.standard_normal(1000).astype(np.float32), rng.random(1000).astype(np.float32)
    P, M, V = _dev(torch, p), _dev(torch, m), _dev(torch, v)
    _cuda.train_adamw(P, _dev(torch, g), M, V, 1e-2, 0.9, 0.95, 1e-8, 0.1, 3, 0.5)
    cpu.adamw(p, g, m, v, 1e-2, 3, 0.9, 0.95, 1e-8, 0.1, 0.5)
    assert _rel(_host(P), p) < 1e-6 and _rel(_host(M), m) < 1e-6 and _rel(_host(V), v) < 1e-6


# ---- the whole step against the CPU ----

@needs_gpu
@pytest.mark.parametrize("tie", [False, True])
def test_one_step_matches_cpu_fp32(tie):
    cfg = LlamaConfig(**{**CFG.to_dict(), "tie_embeddings": tie})
    ids, tg = _batch(cfg)
    ref = LlamaModel(cfg, seed=1)
    gpu = CudaLlamaModel(cfg, params=LlamaModel(cfg, seed=1).params)
    ref.zero_grad()
    loss_ref = ref.forward(ids, tg)
    ref.backward()
    gpu.zero_grad()
    loss = gpu.forward(ids, tg)
    gpu.backward()
    assert abs(loss - loss_ref) < 1e-5 * abs(loss_ref)
    g, gr = gpu.grads, ref.grads
    for name in gr:
        assert _rel(g[name], gr[name]) < 2e-4, name
    assert abs(gpu.grad_norm() - math.sqrt(float((gr.data.astype(np.float64) ** 2).sum()))) < 1e-4
    logits = gpu.forward(ids)
    assert _rel(logits, ref.forward(ids)) < 1e-5


@needs_gpu
def test_trainer_steps_match_cpu_fp32():
    data = np.random.default_rng(5).integers(0, CFG.vocab, 4000).astype(np.int32)
    kw = {"batch_size": 2, "lr": 3e-3, "max_steps": 3, "warmup": 1, "progress": False,
          "eval_every": 100}
    a = Trainer(CFG, data, **kw)
    b = Trainer(CFG, data, device="cuda", **kw)
    for _ in range(3):
        ra, rb = a.step(), b.step()
        assert abs(ra["loss"] - rb["loss"]) < 1e-4 * ra["loss"]
        assert abs(ra["grad_norm"] - rb["grad_norm"]) < 1e-3 * ra["grad_norm"]
    # NOTE: norm-relative: AdamW's m / sqrt(v) can flip the update of a parameter whose
    # gradient is within rounding of zero, one element at a time.
    assert _nrel(b.model.params.data, a.model.params.data) < 2e-3
    assert _nrel(b.opt.v, a.opt.v) < 1e-3


@needs_gpu
def test_frozen_parameters_stay_fixed():
    data = np.random.default_rng(6).integers(0, CFG.vocab, 4000).astype(np.int32)
    tr = Trainer(CFG, data, device="cuda", batch_size=2, max_steps=2, progress=False,
                 trainable=["blk.1.*"])
    before = tr.model.params.data.copy()
    tr.step()
    tr.step()
    p = tr.model.params
    off = p.offsets
    changed = {n for n in p if not np.array_equal(p[n], before[off[n]:off[n] + p[n].size].reshape(p[n].shape))}
    assert changed == {n for n in p if n.startswith("blk.1.")}


def _bf16_step(cfg, ids, tg):
    m = CudaLlamaModel(cfg, params=LlamaModel(cfg, seed=1).params, dtype="bfloat16")
    m.zero_grad()
    loss = m.forward(ids, tg)
    m.backward()
    return loss, m.grads


@needs_gpu
def test_bf16_step_close_to_cpu_and_tc_attention_matches_simt(monkeypatch):
    cfg = LlamaConfig(vocab=96, d_model=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn=384,
                      context=100)  # head_dim 64, T not a multiple of the 64-row tiles
    ids, tg = _batch(cfg)
    ref = LlamaModel(cfg, seed=1)
    loss_ref = ref.forward(ids, tg)
    ref.backward()
    loss_tc, g_tc = _bf16_step(cfg, ids, tg)  # tensor-core attention backward
    monkeypatch.setenv("PYLM_TRAIN_ATTN_BWD", "simt")
    loss_simt, g_simt = _bf16_step(cfg, ids, tg)
    assert loss_tc == loss_simt  # the forward does not depend on the backward kernel
    assert abs(loss_tc - loss_ref) < 0.01 * loss_ref
    for name in ref.grads:
        assert _nrel(g_tc[name], g_simt[name]) < 0.02, name
        assert _nrel(g_tc[name], ref.grads[name]) < 0.05, name


@needs_gpu
def test_bf16_tracks_fp32():
    cfg = LlamaConfig(vocab=64, d_model=128, n_layers=2, n_heads=2, ffn=256, context=64)
    data = np.tile(np.arange(64, dtype=np.int32), 200)  # learnable: counting
    kw = {"batch_size": 4, "lr": 3e-3, "max_steps": 40, "warmup": 5, "progress": False,
          "eval_every": 1000}
    h32 = Trainer(cfg, data, device="cuda", **kw).fit()["loss"]
    h16 = Trainer(cfg, data, device="cuda", dtype="bfloat16", **kw).fit()["loss"]
    assert abs(h16[0] - h32[0]) < 0.02 * h32[0]
    assert h16[-1] < 0.5 * h16[0]  # it learns
    assert np.mean(np.abs(np.array(h16) - np.array(h32))) < 0.05 * np.mean(h32)


@needs_gpu
def test_cli_train_device_cuda(tmp_path):
    from pylm.cli import main

    txt = tmp_path / "t.txt"
    txt.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    out = tmp_path / "m.gguf"
    assert main(["train", "--data", str(txt), "--out", str(out), "--device", "cuda",
                 "--precision", "bf16", "--vocab-size", "300", "--layers", "1", "--d-model", "128",
                 "--heads", "2", "--context", "64", "--steps", "20", "--eval-every", "10",
                 "-q"]) == 0
    assert out.exists() and out.stat().st_size > 0
