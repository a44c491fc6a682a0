"""CUDA flash attention and paged decode attention against float64 numpy references.

GPU tests run only where a device is usable (torch CUDA tensors as device arrays). Argument
validation, the no-GPU error and the dispatch logic run everywhere (fake device arrays: the
bindings reject bad inputs before they touch the device).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import pylm
import pylm.cuda

attention_mod = importlib.import_module("pylm.ops.attention")

pytestmark = pytest.mark.cuda

needs_build = pytest.mark.skipif(not pylm.cuda.is_built(), reason="pylm built without CUDA")
needs_gpu = pytest.mark.skipif(not pylm.cuda.is_available(), reason="no usable CUDA device")


# ---- references -------------------------------------------------------------------------------

def round_to(x, dtype):
    """Round float values to float16 / bfloat16 / float32 (returned as float64)."""
    x = np.asarray(x, np.float64)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
        return u.view(np.float32).astype(np.float64)
    return x.astype(np.float32).astype(np.float64)


def ref_attention(q, k, v, scale=None, causal=True, window=0, q_offset=None, softcap=0.0,
                  p_dtype=None):
    """q [B, Tq, Hq, D], k/v [B, Tk, Hkv, D] -> (out [B, Tq, Hq, D], lse [B, Hq, Tq]).

    float64 throughout; p_dtype rounds exp(s - rowmax) to that dtype before P V (the
    precision model of a 16-bit flash kernel), used only to size tolerances.
    """
    B, Tq, Hq, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    G = Hq // Hkv
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    q_offset = (Tk - Tq if causal else 0) if q_offset is None else q_offset
    pos = q_offset + np.arange(Tq)[:, None]
    j = np.arange(Tk)[None, :]
    mask = np.ones((Tq, Tk), bool)
    if causal:
        mask &= j <= pos
    if window > 0:
        mask &= pos - j < window
    out = np.zeros((B, Tq, Hq, D))
    lse = np.full((B, Hq, Tq), -np.inf)
    for b in range(B):
        for h in range(Hq):
            s = q[b, :, h].astype(np.float64) @ k[b, :, h // G].astype(np.float64).T * scale
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            s = np.where(mask, s, -np.inf)
            mx = s.max(axis=1, keepdims=True) if Tk else np.zeros((Tq, 1))
            mx = np.where(np.isfinite(mx), mx, 0.0)
            e = np.exp(s - mx) * mask
            den = e.sum(axis=1, keepdims=True)
            if p_dtype is not None:
                e = round_to(e, p_dtype)
            ok = den[:, 0] > 0
            out[b, :, h] = np.where(ok[:, None], e @ v[b, :, h // G] / np.where(ok, den[:, 0], 1)[:, None], 0)
            lse[b, h] = np.where(ok, mx[:, 0] + np.log(np.where(ok, den[:, 0], 1)), -np.inf)
    return out, lse


FLOOR = {"float32": 1e-5, "float16": 2e-4, "bfloat16": 1.5e-3}


def tolerance(ref, dtype, p_rounded=None):
    """2x the error of a reference rounded like the kernel, plus a small dtype floor."""
    lp = ref if p_rounded is None else p_rounded
    err = np.abs(round_to(lp, dtype) - ref).max() if ref.size else 0.0
    return 2 * err + FLOOR[dtype] * max(1.0, np.abs(ref).max() if ref.size else 0.0)


def test_reference_matches_cpu_attention(isa):
    rng = np.random.default_rng(0)
    T, S, Hq, Hkv, D = 7, 19, 4, 2, 16
    q = rng.standard_normal((T, Hq, D)).astype(np.float32)
    k = rng.standard_normal((S, Hkv, D)).astype(np.float32)
    v = rng.standard_normal((S, Hkv, D)).astype(np.float32)
    for kw in [{}, {"window": 5}, {"softcap": 2.0}, {"causal": False}]:
        got = pylm.ops.attention(q, k, v, **kw)
        ref, _ = ref_attention(q[None], k[None], v[None], **kw)
        np.testing.assert_allclose(got, ref[0], atol=2e-5, rtol=0)


def paged_inputs(rng, ctx, Tq, Hq, Hkv, D, bs=16, extra_blocks=5):
    """A shuffled block pool, block tables, and the per-sequence contiguous K/V it encodes."""
    nb = [(c + bs - 1) // bs for c in ctx]
    total = sum(nb) + extra_blocks
    perm = rng.permutation(total)
    kc = rng.standard_normal((total, bs, Hkv, D))
    vc = rng.standard_normal((total, bs, Hkv, D))
    mb = max(nb)
    bt = np.zeros((len(ctx), mb), np.int32)
    at = 0
    for s, n in enumerate(nb):
        bt[s, :n] = perm[at:at + n]
        at += n
    q = rng.standard_normal((len(ctx), Tq, Hq, D))
    return q, kc, vc, bt, np.array(ctx, np.int32)


def ref_paged(q, kc, vc, bt, ctx, **kw):
    S, Tq = q.shape[:2]
    bs = kc.shape[1]
    out = np.zeros(q.shape)
    for s in range(S):
        c = int(ctx[s])
        tok = np.arange(c)
        blocks = bt[s, tok // bs]
        k = kc[blocks, tok % bs][None]
        v = vc[blocks, tok % bs][None]
        out[s] = ref_attention(q[s][None], k, v, causal=True, q_offset=c - Tq, **kw)[0][0]
    return out


def test_paged_reference_matches_dense():
    rng = np.random.default_rng(1)
    q, kc, vc, bt, ctx = paged_inputs(rng, [5, 40], 2, 4, 2, 8)
    got = ref_paged(q, kc, vc, bt, ctx)
    c = 40
    tok = np.arange(c)
    k = kc[bt[1, tok // 16], tok % 16][None]
    v = vc[bt[1, tok // 16], tok % 16][None]
    dense = pylm.ops.attention(q[1].astype(np.float32), k[0].astype(np.float32),
                               v[0].astype(np.float32))
    np.testing.assert_allclose(got[1], dense, atol=2e-5)


# ---- validation and dispatch (no GPU needed) --------------------------------------------------

class FakeDev:
    """A device-array stand-in: the bindings validate it and never dereference it."""

    def __init__(self, shape, typestr="<f2", ptr=1 << 20):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (ptr, False), "strides": None, "version": 3}


def flash(q, k, v, **kw):
    if "out" not in kw:
        cai = q.__cuda_array_interface__
        kw["out"] = FakeDev(cai["shape"], cai["typestr"])
    return pylm.ops.flash_attn(q, k, v, **kw)


@needs_build
@pytest.mark.parametrize("case, match", [
    ({"q": (1, 8, 4, 96), "k": (1, 8, 2, 96)}, "D=96"),
    ({"q": (1, 8, 6, 64), "k": (1, 8, 4, 64)}, "Hq=6"),
    ({"q": (1, 8, 4, 64), "k": (1, 8, 2, 64), "kt": "<f4"}, "float32"),
    ({"q": (1, 8, 4, 64), "k": (1, 8, 2, 64), "qt": "<i4"}, "int32"),
    ({"q": (2, 8, 4, 64), "k": (1, 8, 2, 64)}, "shapes do not match"),
    ({"q": (1, 8, 4, 64), "k": (1, 8, 2, 64), "window": 4, "causal": False}, "window=4"),
    ({"q": (1, 9, 4, 64), "k": (1, 8, 2, 64)}, "q_offset=-1"),
    ({"q": (1, 8, 4, 64), "k": (1, 8, 2, 64), "softcap": -1.0}, "softcap"),
    ({"q": (1, 8, 4, 64), "k": (1, 8, 2, 64), "qptr": (1 << 20) + 2}, "aligned"),
    ({"q": (8, 64), "k": (8, 64)}, "expected"),
])
def test_flash_validation(case, match):
    case = dict(case)
    qt, kt = case.pop("qt", "<f2"), case.pop("kt", "<f2")
    q = FakeDev(case.pop("q"), qt, case.pop("qptr", 1 << 20))
    kshape = case.pop("k")
    with pytest.raises(ValueError, match=match):
        flash(q, FakeDev(kshape, kt), FakeDev(kshape, kt), out=FakeDev(q.__cuda_array_interface__["shape"], qt), **case)


@needs_build
def test_flash_validation_out_and_lse():
    q, k = FakeDev((1, 8, 4, 64)), FakeDev((1, 8, 2, 64))
    with pytest.raises(ValueError, match="out: shape"):
        flash(q, k, k, out=FakeDev((1, 8, 4, 128)))
    with pytest.raises(ValueError, match="lse"):
        flash(q, k, k, lse=FakeDev((1, 4, 9), "<f4"))
    with pytest.raises(ValueError, match="lse: expected float32"):
        flash(q, k, k, lse=FakeDev((1, 4, 8), "<f2"))
    with pytest.raises(ValueError, match="device array"):
        flash(np.zeros((1, 8, 4, 64), np.float16), k, k, out=FakeDev((1, 8, 4, 64)))


def paged_fakes(S=2, Tq=1, Hq=4, Hkv=2, D=64, nb=10, mb=4, qt="<f4", kvt="<f2", btt="<i4",
                cl=None):
    return {"q": FakeDev((S, Tq, Hq, D), qt), "k_cache": FakeDev((nb, 16, Hkv, D), kvt),
                "v_cache": FakeDev((nb, 16, Hkv, D), kvt), "block_tables": FakeDev((S, mb), btt),
                "context_lens": FakeDev((S if cl is None else cl,), "<i4"),
                "out": FakeDev((S, Tq, Hq, D), qt)}


@needs_build
@pytest.mark.parametrize("kw, extra, match", [
    ({"D": 80}, {}, "D=80"),
    ({"Hq": 5}, {}, "Hq=5"),
    ({"kvt": "<i4"}, {}, "int32"),
    ({"btt": "<i8"}, {}, "<i8"),
    ({"cl": 3}, {}, "S=2"),
    ({}, {"window": -1}, "window=-1"),
    ({}, {"max_context_len": 65}, "max_context_len=65"),
])
def test_paged_validation(kw, extra, match):
    args = paged_fakes(**kw)
    with pytest.raises(ValueError, match=match):
        pylm.ops.paged_attn(**args, **extra)


@needs_build
def test_paged_validation_cache_shapes():
    args = paged_fakes()
    args["v_cache"] = FakeDev((10, 16, 2, 128), "<f2")
    with pytest.raises(ValueError, match="v_cache"):
        pylm.ops.paged_attn(**args)
    args = paged_fakes()
    args["out"] = FakeDev((2, 1, 4, 64), "<f2")
    with pytest.raises(ValueError, match="out"):
        pylm.ops.paged_attn(**args)


def test_no_gpu_is_an_error_not_a_fallback():
    if pylm.cuda.is_available():
        pytest.skip("a GPU is available")
    for t in ("<f2", "<V2", "<f4"):  # float16, bfloat16, float32: validation passes
        q, k = FakeDev((1, 8, 4, 64), t), FakeDev((1, 8, 2, 64), t)
        with pytest.raises(RuntimeError):
            flash(q, k, k)
        with pytest.raises(RuntimeError):
            flash(q, k, k, lse=FakeDev((1, 4, 8), "<f4"))
    with pytest.raises(RuntimeError):
        pylm.ops.flash_attn(q, k, k)  # out=None: allocation needs the GPU too
    with pytest.raises(RuntimeError):
        pylm.ops.paged_attn(**paged_fakes())
    with pytest.raises(RuntimeError):
        pylm.ops.paged_attn(**paged_fakes(qt="<V2", kvt="<V2", Tq=3))


def test_attention_dispatches_device_arrays(monkeypatch):
    calls = []
    monkeypatch.setattr(attention_mod, "flash_attn", lambda *a, **kw: calls.append((a, kw)) or "dev")
    q, k = FakeDev((8, 4, 64)), FakeDev((8, 2, 64))
    assert pylm.ops.attention(q, k, k, window=3, q_pos0=2, softcap=1.5) == "dev"
    (args, kw), = calls
    assert args == (q, k, k)
    assert kw == {"causal": True, "scale": None, "window": 3, "softcap": 1.5, "q_offset": 2}
    # numpy stays on the CPU
    x = np.ones((2, 4, 64), np.float32)
    assert pylm.ops.attention(x, x[:, :2], x[:, :2]).shape == (2, 4, 64)
    assert len(calls) == 1


# ---- GPU: flash forward -----------------------------------------------------------------------

def torch_dev():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    return torch


TORCH_DT = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def to_dev(torch, x, dtype):
    return torch.tensor(np.asarray(x, np.float32), device="cuda").to(getattr(torch, TORCH_DT[dtype]))


def from_dev(t):
    return t.float().cpu().numpy().astype(np.float64)


def check_flash(dtype, B, Tq, Tk, Hq, Hkv, D, seed=0, lse=False, **kw):
    torch = torch_dev()
    rng = np.random.default_rng(seed)
    q = round_to(rng.standard_normal((B, Tq, Hq, D)), dtype)
    k = round_to(rng.standard_normal((B, Tk, Hkv, D)), dtype)
    v = round_to(rng.standard_normal((B, Tk, Hkv, D)), dtype)
    qd, kd, vd = (to_dev(torch, x, dtype) for x in (q, k, v))
    lse_d = torch.empty((B, Hq, Tq), dtype=torch.float32, device="cuda") if lse else None
    out = pylm.ops.flash_attn(qd, kd, vd, lse=lse_d, **kw)
    torch.cuda.synchronize()
    ref, ref_lse = ref_attention(q, k, v, **kw)
    lp = None if dtype == "float32" else ref_attention(q, k, v, p_dtype=dtype, **kw)[0]
    err = np.abs(from_dev(out) - ref).max()
    assert err <= tolerance(ref, dtype, lp), (dtype, D, kw, err, tolerance(ref, dtype, lp))
    if lse:
        got = lse_d.cpu().numpy().astype(np.float64)
        assert np.array_equal(np.isneginf(got), np.isneginf(ref_lse))
        fin = np.isfinite(ref_lse)
        np.testing.assert_allclose(got[fin], ref_lse[fin], atol=2e-4, rtol=0)
    return out


@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("D", [64, 128, 256])
def test_flash_causal_gqa(dtype, D):
    check_flash(dtype, 2, 133, 133, 4, 2, D, lse=True)


@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("kw", [
    {"causal": False},
    {"window": 50},
    {"softcap": 5.0, "scale": 0.5},
    {"q_offset": None},  # Tq < Tk: the queries are the last Tq positions
    {"q_offset": 40},
])
def test_flash_variants(dtype, kw):
    Tq, Tk = (70, 190) if "q_offset" in kw or not kw.get("causal", True) else (260, 260)
    check_flash(dtype, 2, Tq, Tk, 6, 2, 128, seed=3, lse=True, **kw)


@needs_gpu
def test_flash_long_causal_f16():
    check_flash("float16", 1, 1024, 1024, 2, 1, 128, seed=5, lse=True)


@needs_gpu
def test_flash_no_keys_gives_zeros():
    torch = torch_dev()
    q = torch.randn(1, 5, 2, 64, device="cuda", dtype=torch.float16)
    k = torch.empty(1, 0, 2, 64, device="cuda", dtype=torch.float16)
    lse = torch.empty(1, 2, 5, device="cuda")
    out = pylm.ops.flash_attn(q, k, k, causal=False, lse=lse)
    assert torch.count_nonzero(out).item() == 0
    assert torch.isneginf(lse).all().item()


@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_flash_strided_fused_qkv(dtype):
    """q/k/v as head slices of one fused [B, T, Hq + 2 Hkv, D] projection (non-contiguous)."""
    torch = torch_dev()
    rng = np.random.default_rng(7)
    B, T, Hq, Hkv, D = 2, 77, 4, 2, 64
    qkv = round_to(rng.standard_normal((B, T, Hq + 2 * Hkv, D)), dtype)
    d = to_dev(torch, qkv, dtype)
    qd, kd, vd = d[:, :, :Hq], d[:, :, Hq:Hq + Hkv], d[:, :, Hq + Hkv:]
    out = pylm.ops.flash_attn(qd, kd, vd)
    torch.cuda.synchronize()
    ref, _ = ref_attention(qkv[:, :, :Hq], qkv[:, :, Hq:Hq + Hkv], qkv[:, :, Hq + Hkv:])
    lp = None if dtype == "float32" else ref_attention(
        qkv[:, :, :Hq], qkv[:, :, Hq:Hq + Hkv], qkv[:, :, Hq + Hkv:], p_dtype=dtype)[0]
    assert np.abs(from_dev(out) - ref).max() <= tolerance(ref, dtype, lp)


@needs_gpu
def test_flash_matches_cpu_attention_and_dispatch():
    """pylm.ops.attention on a 3-D CUDA tensor runs the GPU kernel and agrees with the CPU."""
    torch = torch_dev()
    rng = np.random.default_rng(9)
    q = rng.standard_normal((50, 4, 64)).astype(np.float32)
    k = rng.standard_normal((90, 2, 64)).astype(np.float32)
    v = rng.standard_normal((90, 2, 64)).astype(np.float32)
    cpu = pylm.ops.attention(q, k, v, window=30)
    dev = pylm.ops.attention(*(torch.from_numpy(x).cuda() for x in (q, k, v)), window=30)
    assert dev.is_cuda
    np.testing.assert_allclose(dev.cpu().numpy(), cpu, atol=2e-5, rtol=0)


# ---- GPU: paged decode ------------------------------------------------------------------------

def check_paged(q_dtype, kv_dtype, ctx, Tq, Hq, Hkv, D, seed=0, bs=16, **kw):
    torch = torch_dev()
    rng = np.random.default_rng(seed)
    q, kc, vc, bt, cl = paged_inputs(rng, ctx, Tq, Hq, Hkv, D, bs=bs)
    q, kc, vc = round_to(q, q_dtype), round_to(kc, kv_dtype), round_to(vc, kv_dtype)
    out = pylm.ops.paged_attn(to_dev(torch, q, q_dtype), to_dev(torch, kc, kv_dtype),
                              to_dev(torch, vc, kv_dtype), torch.from_numpy(bt).cuda(),
                              torch.from_numpy(cl).cuda(), **kw)
    torch.cuda.synchronize()
    kw.pop("max_context_len", None)
    ref = ref_paged(q, kc, vc, bt, cl, **kw)
    err = np.abs(from_dev(out) - ref).max()
    assert err <= tolerance(ref, q_dtype), (q_dtype, kv_dtype, D, kw, err)


@needs_gpu
@pytest.mark.parametrize("q_dtype, kv_dtype", [("float32", "float16"), ("float16", "float16"),
                                               ("bfloat16", "bfloat16"), ("float32", "float32")])
@pytest.mark.parametrize("D", [64, 128, 256])
def test_paged_split_k(q_dtype, kv_dtype, D):
    # few sequences, long contexts: several splits and the reduce kernel
    check_paged(q_dtype, kv_dtype, [1, 17, 700, 3001], 1, 8, 2, D)


@needs_gpu
@pytest.mark.parametrize("kv_dtype", ["float16", "float32"])
def test_paged_single_split_speculative_rows(kv_dtype):
    # max_context_len <= 256: one split, direct normalized writes; Tq=5, G=4: 20 rows, 2 chunks
    check_paged("float32", kv_dtype, [5, 100, 256, 31], 5, 8, 2, 128, max_context_len=256)


@needs_gpu
@pytest.mark.parametrize("kw", [{"window": 100}, {"softcap": 3.0, "scale": 0.3}])
def test_paged_window_softcap(kw):
    check_paged("float16", "float16", [50, 1000, 2500], 3, 4, 1, 128, seed=2, **kw)


@needs_gpu
def test_paged_other_block_size_and_mha():
    check_paged("bfloat16", "bfloat16", [33, 400], 2, 4, 4, 64, seed=4, bs=32)
