"""CUDA elementwise ops (rmsnorm, rope, softmax, swiglu, geglu, add, embedding, dequantize) vs
float64 / gguf references, and the dispatch rules of pylm.ops for device arrays.

Validation and "no GPU -> RuntimeError" tests run anywhere the CUDA extension is built (fake
__cuda_array_interface__ objects are parsed, never dereferenced); numeric tests need a GPU and
torch with CUDA. Tolerances: float32 storage ~1e-5 relative; float16/bfloat16 storage: the
dtype's epsilon relative (2x the rounding error of a float64 result rounded to that dtype).
"""

import numpy as np
import pytest

import pylm
import pylm.cuda

pytestmark = pytest.mark.cuda

needs_ext = pytest.mark.skipif(not pylm.cuda.is_built(), reason="pylm built without CUDA")


class Fake:
    def __init__(self, shape, typestr="<f4", ptr=1 << 16, strides=None, readonly=False):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (ptr, readonly), "version": 3,
                                         "strides": strides}


# ---------------------------------------------------------------- dispatch, no device needed

def test_device_input_without_gpu_raises_runtime_error():
    if pylm.cuda.is_available():
        pytest.skip("a GPU is available")
    x = Fake((4, 8))
    with pytest.raises(RuntimeError):
        pylm.ops.rmsnorm(x, out=Fake((4, 8), ptr=1 << 20))
    with pytest.raises(RuntimeError):
        pylm.ops.softmax(x)
    with pytest.raises(RuntimeError):
        pylm.ops.swiglu(x, Fake((4, 8), ptr=1 << 20), out=Fake((4, 8), ptr=1 << 24))


def test_host_input_stays_on_cpu():
    x = np.array([[3.0, 4.0]], np.float32)
    np.testing.assert_allclose(pylm.ops.rmsnorm(x, eps=0.0), [[0.84852815, 1.1313709]], rtol=1e-6)


def test_unsupported_device_ops_raise():
    for fn in (pylm.ops.silu, pylm.ops.gelu, pylm.ops.exp, pylm.ops.tanh):
        with pytest.raises(NotImplementedError):  # a RuntimeError
            fn(Fake((4,)))


@needs_ext
def test_validation_before_device():
    m = pylm.cuda._module()
    x, w = Fake((4, 8)), Fake((8,), ptr=1 << 20)
    with pytest.raises(ValueError, match=r"x.shape\[-1\]=8 but weight.shape\[0\]=6"):
        m.rmsnorm(x, Fake((6,)), Fake((4, 8)), 1e-6)
    with pytest.raises(ValueError, match="rmsnorm: out.dtype=float16"):
        m.rmsnorm(x, w, Fake((4, 8), "<f2"), 1e-6)
    with pytest.raises(ValueError, match="rmsnorm: weight: expected float32"):
        m.rmsnorm(x, Fake((8,), "<f2"), Fake((4, 8)), 1e-6)
    with pytest.raises(ValueError, match="eps"):
        m.rmsnorm(x, w, Fake((4, 8)), -1.0)
    with pytest.raises(ValueError, match="read-only"):
        m.rmsnorm(x, w, Fake((4, 8), readonly=True), 1e-6)
    with pytest.raises(ValueError, match="int32"):
        m.rmsnorm(Fake((4, 8), "<i4"), None, Fake((4, 8), "<i4"), 1e-6)
    q, pos = Fake((3, 2, 8)), Fake((3,), "<i4")
    with pytest.raises(ValueError, match="n_dims=5"):
        m.rope(q, pos, 10000.0, False, 5)
    with pytest.raises(ValueError, match="n_dims=10"):
        m.rope(q, pos, 10000.0, False, 10)
    with pytest.raises(ValueError, match=r"positions.shape=\(4,\)"):
        m.rope(q, Fake((4,), "<i4"), 10000.0, False)
    with pytest.raises(ValueError, match="positions: expected int32"):
        m.rope(q, Fake((3,)), 10000.0, False)
    with pytest.raises(ValueError, match="base"):
        m.rope(q, pos, 0.0, False)
    with pytest.raises(ValueError, match="contiguous heads"):
        m.rope(Fake((3, 2, 8), strides=(64, 4, 8)), pos, 10000.0, False)
    with pytest.raises(ValueError, match="alias"):
        m.softmax(Fake((4, 8), "<f2"), Fake((4, 8)), 1.0)
    with pytest.raises(ValueError, match="softmax: out: expected float32"):
        m.softmax(x, Fake((4, 8), "<f2"), 1.0)
    with pytest.raises(ValueError, match=r"swiglu: up.shape=\(4, 6\)"):
        m.swiglu(x, Fake((4, 6)), Fake((4, 8)))
    with pytest.raises(ValueError, match="geglu: out.dtype"):
        m.geglu(x, x, Fake((4, 8), "<f2"))
    with pytest.raises(ValueError, match="add: b.dtype"):
        m.add(x, Fake((4, 8), "<V2"), x)
    with pytest.raises(ValueError, match="block size 32"):
        m.embedding(Fake((10, 18), "|u1"), "Q4_0", Fake((3,), "<i4"), Fake((3, 48)))
    with pytest.raises(ValueError, match="not a whole number"):
        m.embedding(Fake((10, 19), "|u1"), "Q4_0", Fake((3,), "<i4"), Fake((3, 32)))
    with pytest.raises(ValueError, match="unsupported qtype Q8_K"):
        m.embedding(Fake((10, 292), "|u1"), "Q8_K", Fake((3,), "<i4"), Fake((3, 256)))
    with pytest.raises(ValueError, match="needs 36"):
        m.dequantize_into(Fake((35,), "|u1"), "Q4_0", Fake((64,)))
    with pytest.raises(ValueError, match="multiple of 256"):
        m.dequantize_into(Fake((144,), "|u1"), "Q4_K", Fake((2, 128)))


@needs_ext
def test_strided_glu_views_validate():
    """gate/up as the two halves of one [R, 2F] row-major array are accepted (no device)."""
    m = pylm.cuda._module()
    R, F = 4, 8
    gate = Fake((R, F), strides=(2 * F * 4, 4))
    up = Fake((R, F), ptr=(1 << 16) + F * 4, strides=(2 * F * 4, 4))
    with pytest.raises(RuntimeError if not pylm.cuda.is_available() else ValueError):
        m.swiglu(gate, up, Fake((R, F), ptr=1 << 24))
    with pytest.raises(ValueError, match="equally spaced"):
        m.swiglu(gate, Fake((R, F), strides=(3 * F * 4, 4)), Fake((R, F), ptr=1 << 24))


# ---------------------------------------------------------------- GPU numerics (torch CUDA)

@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    if not (pylm.cuda.is_available() and torch.cuda.is_available()):
        pytest.skip("needs pylm CUDA and torch CUDA")
    return torch


EPS = {"float32": 1e-5, "float16": 2.0**-10, "bfloat16": 2.0**-7}
DTYPES = ["float32", "float16", "bfloat16"]


def dev(torch, a, dtype):
    return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to("cuda", getattr(torch, dtype))


def host(t):
    return t.float().cpu().numpy().astype(np.float64)


def close(got, ref, dtype, atol_scale=1.0):
    tol = EPS[dtype]
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * 1e-2 * atol_scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [576, 1000, 4096])
def test_rmsnorm(torch, dtype, C):
    rng = np.random.default_rng(C)
    x = dev(torch, rng.standard_normal((37, C)) * 3, dtype)
    w = torch.from_numpy(rng.standard_normal(C).astype(np.float32)).cuda()
    y = pylm.ops.rmsnorm(x, w, eps=1e-5)
    assert y.dtype == x.dtype and y.shape == x.shape
    xd, wd = host(x), w.double().cpu().numpy()
    ref = xd / np.sqrt((xd**2).mean(-1, keepdims=True) + 1e-5) * wd
    close(host(y), ref, dtype, np.abs(ref).max())
    pylm.ops.rmsnorm(x, None, eps=1e-5, out=x)  # in place, no weight
    ref = xd / np.sqrt((xd**2).mean(-1, keepdims=True) + 1e-5)
    close(host(x), ref, dtype, np.abs(ref).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["normal", "neox"])
def test_rope(torch, dtype, mode):
    rng = np.random.default_rng(3)
    T, H, D, nd = 9, 4, 64, 48
    x = dev(torch, rng.standard_normal((T, H, D)), dtype)
    pos = np.array([0, 1, 2, 7, 100, 4095, 32768, 500000, 3], np.int32)
    y = pylm.ops.rope(x, pos, base=10000.0, mode=mode, n_dims=nd, freq_scale=0.5)
    xd = host(x)
    ref = xd.copy()
    half = nd // 2
    ang = pos[:, None].astype(np.float64) * (0.5 * 10000.0 ** (-2.0 * np.arange(half) / nd))
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    ia = np.arange(half) if mode == "neox" else 2 * np.arange(half)
    ib = ia + half if mode == "neox" else ia + 1
    ref[..., ia] = xd[..., ia] * c - xd[..., ib] * s
    ref[..., ib] = xd[..., ia] * s + xd[..., ib] * c
    close(host(y), ref, dtype, 50.0)
    np.testing.assert_array_equal(host(x), xd)  # not in place by default
    if dtype == "float32":  # same float cos/sin and rounding order as the CPU kernel
        cpu = pylm.ops.rope(xd.astype(np.float32), pos, 10000.0, mode, nd, 0.5)
        np.testing.assert_allclose(host(y), cpu, rtol=0, atol=1e-6)


def test_rope_strided_inplace(torch):
    """q inside a fused qkv buffer: token stride (Hq + 2 Hkv) * D, rotated in place."""
    rng = np.random.default_rng(4)
    T, Hq, Hkv, D = 5, 4, 2, 32
    qkv = dev(torch, rng.standard_normal((T, (Hq + 2 * Hkv) * D)), "float32")
    before = qkv.cpu().numpy().copy()
    q = qkv[:, : Hq * D].view(T, Hq, D)
    pos = torch.arange(T, dtype=torch.int32, device="cuda") + 10
    pylm.ops.rope(q, pos, mode="neox", inplace=True)
    ref = pylm.ops.rope(before[:, : Hq * D].reshape(T, Hq, D).copy(), np.arange(T) + 10,
                        mode="neox")
    after = qkv.cpu().numpy()
    np.testing.assert_allclose(after[:, : Hq * D].reshape(T, Hq, D), ref, atol=1e-6)
    np.testing.assert_array_equal(after[:, Hq * D:], before[:, Hq * D:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [7, 256, 5000])
def test_softmax(torch, dtype, C):
    rng = np.random.default_rng(C)
    xh = rng.standard_normal((6, C)) * 4
    xh[1, ::3] = -np.inf  # masks
    xh[2, :] = -np.inf    # fully masked row -> zeros
    x = dev(torch, xh, dtype)
    y = pylm.ops.softmax(x, scale=0.7)
    assert y.dtype == torch.float32
    xd = host(x) * 0.7
    with np.errstate(invalid="ignore"):
        e = np.exp(xd - xd.max(-1, keepdims=True))
        ref = e / e.sum(-1, keepdims=True)
    ref[2] = 0.0
    np.testing.assert_allclose(host(y), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["swiglu", "geglu"])
def test_glu(torch, dtype, act):
    rng = np.random.default_rng(5)
    R, F = 19, 1536
    h = dev(torch, rng.standard_normal((R, 2 * F)) * 3, dtype)
    gate, up = h[:, :F], h[:, F:]  # strided halves of one array
    y = getattr(pylm.ops, act)(gate, up)
    g, u = host(gate), host(up)
    if act == "swiglu":
        ref = g / (1 + np.exp(-g)) * u
    else:
        ref = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3))) * u
    close(host(y), ref, dtype, np.abs(ref).max())
    if dtype == "float32":  # the CPU kernel's formula, to a few ulp
        cpu = getattr(pylm.ops, act)(g.astype(np.float32), u.astype(np.float32))
        np.testing.assert_allclose(host(y), cpu, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add(torch, dtype):
    rng = np.random.default_rng(6)
    a, b = dev(torch, rng.standard_normal(10001), dtype), dev(torch, rng.standard_normal(10001), dtype)
    ref = host(a) + host(b)
    close(host(pylm.cuda.ops.add(a, b)), ref, dtype, np.abs(ref).max())
    pylm.cuda.ops.add(a, b, out=a)
    close(host(a), ref, dtype, np.abs(ref).max())


# K-quant scale fields (byte offsets of fp16 d/dmin) kept finite in random blocks.
KQ_SCALES = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def table_bytes(qtype, V, C, rng):
    gguf = pytest.importorskip("gguf")
    T = gguf.GGMLQuantizationType[qtype]
    bs, ts = gguf.GGML_QUANT_SIZES[T]
    if qtype in KQ_SCALES:
        raw = rng.integers(0, 256, size=(V * C // bs, ts), dtype=np.uint8)
        for o in KQ_SCALES[qtype]:
            raw[:, o: o + 2] = rng.uniform(-2, 2, (raw.shape[0], 1)).astype(np.float16).view(np.uint8)
        raw = raw.reshape(V, -1)
    else:
        raw = gguf.quants.quantize(rng.standard_normal((V, C)).astype(np.float32), T)
    ref = gguf.quants.dequantize(raw, T).reshape(V, C).astype(np.float32)
    return np.ascontiguousarray(raw).view(np.uint8).reshape(V, -1), ref


QTYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
          "Q5_K", "Q6_K"]


@pytest.mark.parametrize("qtype", QTYPES)
def test_embedding_bit_exact(torch, qtype):
    rng = np.random.default_rng(7)
    V, C = 50, 512
    raw, ref = table_bytes(qtype, V, C, rng)
    table = torch.from_numpy(raw).cuda()
    ids = np.array([[0, 49, 7], [7, 3, 11]], np.int32)
    scale = np.float32(22.627417)
    y = pylm.cuda.ops.embedding(table, torch.from_numpy(ids).cuda(), qtype, scale=float(scale))
    assert tuple(y.shape) == (2, 3, C)
    np.testing.assert_array_equal(y.cpu().numpy(), ref[ids] * scale)
    y16 = pylm.cuda.ops.embedding(table, ids, qtype, dtype="float16")  # host ids are uploaded
    np.testing.assert_array_equal(y16.cpu().numpy(), ref[ids].astype(np.float16))


def test_embedding_checks_ids(torch):
    raw, _ = table_bytes("Q8_0", 10, 64, np.random.default_rng(8))
    with pytest.raises(IndexError, match=r"ids\[1\]=10"):
        pylm.cuda.ops.embedding(torch.from_numpy(raw).cuda(), [3, 10], "Q8_0")


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_device(torch, qtype):
    raw, ref = table_bytes(qtype, 8, 256, np.random.default_rng(9))
    d = torch.from_numpy(raw).cuda()
    got = pylm.ops.dequantize(d, qtype, (8, 256))
    np.testing.assert_array_equal(got.cpu().numpy(), ref)
    got16 = pylm.ops.dequantize(d, qtype, (8, 256), dtype="float16")
    np.testing.assert_array_equal(got16.cpu().numpy(), ref.astype(np.float16))
    np.testing.assert_array_equal(pylm.cuda.dequantize(raw, qtype, (8, 256)), ref)  # host path


def test_pylm_array_in_pylm_array_out():
    if not pylm.cuda.is_available():
        pytest.skip("no usable CUDA device")
    rng = np.random.default_rng(10)
    xh = rng.standard_normal((3, 64)).astype(np.float32)
    x = pylm.cuda.Array.from_numpy(xh)
    w = pylm.cuda.Array.from_numpy(np.ones(64, np.float32))
    y = pylm.ops.rmsnorm(x, w, eps=1e-6)
    assert isinstance(y, pylm.cuda.Array)
    np.testing.assert_allclose(y.numpy(), pylm.ops.rmsnorm(xh, eps=1e-6), rtol=1e-5, atol=1e-6)
    xb = pylm.cuda.Array.from_numpy(xh, dtype="bfloat16")
    yb = pylm.ops.softmax(xb)
    ref = pylm.ops.softmax(xb.numpy())
    np.testing.assert_allclose(yb.numpy(), ref, rtol=1e-5, atol=1e-7)
