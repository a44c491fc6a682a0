"""CUDA GEMM (pylm.ops.gemm / pylm.ops.matmul on device arrays) vs a float64 numpy reference.

Validation and "no GPU -> RuntimeError" run everywhere the extension is built; the numeric tests
need a GPU and CUDA torch. Tolerances are tied to the dtype: the error of an fp32-accumulating
reference rounded to the output dtype, times 2, plus a small fp32 floor.
"""

import numpy as np
import pytest

import pylm.cuda
import pylm.ops

pytestmark = pytest.mark.cuda

needs_built = pytest.mark.skipif(not pylm.cuda.is_built(), reason="pylm built without CUDA")
needs_gpu = pytest.mark.skipif(not pylm.cuda.is_available(), reason="no usable CUDA device")


class FakeDev:
    """Looks like a device array (never dereferenced: validation fails or no GPU is found)."""

    def __init__(self, shape, typestr="<f4", strides=None, ptr=1 << 20):
        self.shape = tuple(shape)
        self.__cuda_array_interface__ = {
            "shape": self.shape, "typestr": typestr, "data": (ptr, False),
            "strides": strides, "version": 3,
        }


# ---- validation (no GPU needed) ----

@needs_built
@pytest.mark.parametrize("a, b, c, match", [
    (FakeDev((4, 8)), FakeDev((8, 5), "<f2"), FakeDev((4, 5)), "float16"),
    (FakeDev((4, 8), "<i4"), FakeDev((8, 5), "<i4"), FakeDev((4, 5)), "int32"),
    (FakeDev((4, 8)), FakeDev((7, 5)), FakeDev((4, 5)), r"\(7, 5\)"),
    (FakeDev((4, 8)), FakeDev((8, 5)), FakeDev((4, 6)), r"c: shape \(4, 6\)"),
    (FakeDev((4, 8), "<f2"), FakeDev((8, 5), "<f2"), FakeDev((4, 5), "<V2"), "bfloat16"),
    (FakeDev((4, 8), strides=(64, 8)), FakeDev((8, 5)), FakeDev((4, 5)), "unit stride"),
    (FakeDev((2, 4, 8)), FakeDev((8, 5)), FakeDev((4, 5)), "2 dims"),
])
def test_gemm_rejects_bad_arguments(a, b, c, match):
    with pytest.raises(ValueError, match=match):
        pylm.ops.gemm(a, b, c)


@needs_built
def test_gemm_rejects_host_arrays():
    with pytest.raises(ValueError, match="a: expected a CUDA device array"):
        pylm.ops.gemm(np.zeros((2, 2), np.float32), FakeDev((2, 2)), FakeDev((2, 2)))
    with pytest.raises(ValueError, match="b: expected a CUDA device array"):
        pylm.ops.matmul(FakeDev((2, 2)), np.zeros((2, 2), np.float32), out=FakeDev((2, 2)))


def test_no_gpu_is_an_error_not_a_fallback():
    if pylm.cuda.is_available():
        pytest.skip("a GPU is available")
    with pytest.raises(RuntimeError):
        pylm.ops.gemm(FakeDev((4, 8)), FakeDev((5, 8)), FakeDev((4, 5)), trans_b=True)


def test_device_detection_is_pure_python():
    # gemm/qmatmul dispatch on pylm.cuda.is_device_array (torch bf16 views, strided head slices
    # included, are read through DLPack by the extension: see test_cuda_attention's interop test).
    assert not pylm.cuda.is_device_array(np.zeros(3))
    assert pylm.cuda.is_device_array(FakeDev((3,)))
    torch = pytest.importorskip("torch")
    assert not pylm.cuda.is_device_array(torch.zeros(3))


# ---- numerics (GPU) ----

def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    return torch


def _round(x64, dtype, torch):
    return torch.from_numpy(x64).to(dtype).to(torch.float64).numpy()


def _check(got, ref64, fp32_ref, out_dtype, torch):
    """|got - ref| <= 2 * error of the fp32-accumulating reference rounded to out_dtype."""
    ref_err = np.abs(_round(fp32_ref, out_dtype, torch) - ref64).max()
    scale = max(np.abs(ref64).max(), 1.0)
    tol = 2 * ref_err + 1e-5 * scale
    err = np.abs(got - ref64).max()
    assert err <= tol, f"max error {err} > tol {tol}"


# decode (skinny kernel when trans_b), odd edges (FFMA fallback for 16-bit: rows not 16-byte
# aligned), tensor-core tiles with M/N edges, several 128-row tile groups, a long K pipeline.
SHAPES = [(1, 64, 128), (3, 33, 64), (8, 1000, 2048), (5, 200, 96), (130, 70, 100),
          (129, 257, 33), (130, 72, 104), (256, 256, 256), (2100, 136, 264), (64, 128, 4096)]


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("mnk", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm_matches_float64(dtype, trans_a, trans_b, mnk):
    torch = _torch_cuda()
    M, N, K = mnk
    rng = np.random.default_rng(M * 7 + N * 3 + K)
    td = getattr(torch, dtype)
    a64 = _round(rng.standard_normal((K, M) if trans_a else (M, K)), td, torch)
    b64 = _round(rng.standard_normal((N, K) if trans_b else (K, N)), td, torch)
    a = torch.from_numpy(a64).to(td).cuda()
    b = torch.from_numpy(b64).to(td).cuda()
    opa, opb = (a64.T if trans_a else a64), (b64.T if trans_b else b64)
    ref = opa @ opb
    fp32 = (opa.astype(np.float32) @ opb.astype(np.float32)).astype(np.float64)
    c = pylm.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out_dtype="float32")
    torch.cuda.synchronize()
    _check(c.double().cpu().numpy(), ref, fp32, torch.float32, torch)
    if dtype != "float32":  # 16-bit output rounds once more
        c16 = pylm.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
        assert c16.dtype == td
        _check(c16.double().cpu().numpy(), ref, fp32, td, torch)


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gemm_alpha_beta_views_and_odd_strides(dtype):
    torch = _torch_cuda()
    td = getattr(torch, dtype)
    rng = np.random.default_rng(5)
    M, N, K = 37, 45, 70
    # a is a column slice (row stride 73: not 16-byte aligned -> FFMA fallback for 16-bit),
    # b a transposed view (column-major), c a row slice of a wider array.
    a_full = _round(rng.standard_normal((M, K + 3)), td, torch)
    b_store = _round(rng.standard_normal((N, K)), td, torch)
    c_full = rng.standard_normal((M, N + 8)).astype(np.float32)
    a = torch.from_numpy(a_full).to(td).cuda()[:, 1: K + 1]
    b = torch.from_numpy(b_store).to(td).cuda().t()  # (K, N) view
    c_store = torch.from_numpy(c_full).cuda()
    c = c_store[:, 2: N + 2]
    pylm.ops.gemm(a, b, c, alpha=0.5, beta=-2.0)
    torch.cuda.synchronize()
    opa = a_full[:, 1: K + 1]
    ref = 0.5 * (opa @ b_store.T) - 2.0 * c_full[:, 2: N + 2].astype(np.float64)
    fp32 = (0.5 * (opa.astype(np.float32) @ b_store.T.astype(np.float32))
            - 2.0 * c_full[:, 2: N + 2]).astype(np.float64)
    _check(c.double().cpu().numpy(), ref, fp32, torch.float32, torch)
    # the columns outside the slice are untouched
    after = c_store.cpu().numpy()
    np.testing.assert_array_equal(after[:, :2], c_full[:, :2])
    np.testing.assert_array_equal(after[:, N + 2:], c_full[:, N + 2:])


@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_padded_rows_partial_chunks(dtype, trans_a, trans_b):
    """Row strides that are multiples of 8 but lengths that are not: the tensor-core path with
    16-byte chunks that straddle the end of a row (partially zero-filled by cp.async)."""
    torch = _torch_cuda()
    td = getattr(torch, dtype)
    rng = np.random.default_rng(11)
    M, N, K = 141, 77, 91
    pad = lambda r, c: _round(rng.standard_normal((r, (c + 7) // 8 * 8 + 8)), td, torch)
    a_store = pad(K, M) if trans_a else pad(M, K)
    b_store = pad(N, K) if trans_b else pad(K, N)
    a64 = a_store[:, :M] if trans_a else a_store[:, :K]
    b64 = b_store[:, :K] if trans_b else b_store[:, :N]
    a = torch.from_numpy(a_store).to(td).cuda()[:, : a64.shape[1]]
    b = torch.from_numpy(b_store).to(td).cuda()[:, : b64.shape[1]]
    opa, opb = (a64.T if trans_a else a64), (b64.T if trans_b else b64)
    ref = opa @ opb
    fp32 = (opa.astype(np.float32) @ opb.astype(np.float32)).astype(np.float64)
    c = pylm.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out_dtype="float32")
    torch.cuda.synchronize()
    _check(c.double().cpu().numpy(), ref, fp32, torch.float32, torch)


@needs_gpu
def test_matmul_dispatches_and_accumulates():
    torch = _torch_cuda()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    w = rng.standard_normal((40, 64)).astype(np.float32)
    out = torch.ones((3, 40), device="cuda")
    y = pylm.ops.matmul(torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda(), True,
                        out=out, accumulate=True)
    assert y is out
    np.testing.assert_allclose(out.cpu().numpy(), x.astype(np.float64) @ w.T + 1, rtol=1e-4,
                               atol=1e-4)
