"""CUDA quantized matmul (pylm.ops.qmatmul on device arrays) vs float64 numpy on the weights
dequantized by the gguf package, and vs the CPU pylm.ops.qmatmul.

Validation and "no GPU -> RuntimeError" run everywhere the extension is built; the numeric tests
need a GPU and CUDA torch.
"""

import numpy as np
import pytest

import pylm.cuda
import pylm.ops

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T
from gguf import quants

pytestmark = pytest.mark.cuda

needs_built = pytest.mark.skipif(not pylm.cuda.is_built(), reason="pylm built without CUDA")
needs_gpu = pytest.mark.skipif(not pylm.cuda.is_available(), reason="no usable CUDA device")

QTYPES = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]


class FakeDev:
    def __init__(self, shape, typestr="<f4", ptr=1 << 20):
        self.shape = tuple(shape)
        self.__cuda_array_interface__ = {
            "shape": self.shape, "typestr": typestr, "data": (ptr, False), "strides": None,
            "version": 3,
        }


def wbytes(qtype, n, k, ptr=1 << 20):
    bs, ts = gguf.GGML_QUANT_SIZES[T[qtype]]
    return FakeDev((n * k // bs * ts,), "|u1", ptr)


# ---- validation (no GPU needed) ----

@needs_built
@pytest.mark.parametrize("kwargs, match", [
    ({"qtype": "Q2_K"}, "Q2_K"),
    ({"qtype": "nope"}, "nope"),
    ({"k": 40}, "K=40"),
    ({"w": wbytes("Q4_0", 8, 64)}, "bytes"),
    ({"x": FakeDev((2, 64), "<i4")}, "int32"),
    ({"x": FakeDev((2, 32))}, "K=64"),
    ({"out": FakeDev((2, 9))}, r"y: shape \(2, 9\)"),
    ({"w": wbytes("Q4_0", 16, 64, ptr=(1 << 20) + 2)}, "16-byte aligned"),
    ({"x": FakeDev((2, 64), ptr=(1 << 20) + 4)}, "16-byte aligned"),
])
def test_qmatmul_rejects_bad_arguments(kwargs, match):
    args = {"qtype": "Q4_0", "k": 64, "w": wbytes("Q4_0", 16, 64), "x": FakeDev((2, 64)),
            "out": FakeDev((2, 16))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pylm.ops.qmatmul(args["x"], args["w"], args["qtype"], (16, args["k"]), out=args["out"])


@needs_built
def test_qmatmul_rejects_mixed_host_and_device():
    with pytest.raises(ValueError, match="x: expected a CUDA device array"):
        pylm.ops.qmatmul(np.zeros(64, np.float32), wbytes("Q8_0", 4, 64), "Q8_0", (4, 64),
                         out=FakeDev((4,)))


def test_no_gpu_is_an_error_not_a_fallback():
    if pylm.cuda.is_available():
        pytest.skip("a GPU is available")
    with pytest.raises(RuntimeError):
        pylm.ops.qmatmul(FakeDev((256,)), wbytes("Q4_K", 4, 256), "Q4_K", (4, 256),
                         out=FakeDev((4,)))


def test_cpu_out_and_accumulate():
    rng = np.random.default_rng(0)
    w = quants.quantize(rng.standard_normal((6, 64)).astype(np.float32), T.Q8_0)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    ref = pylm.ops.qmatmul(x, w, "Q8_0", (6, 64))
    out = np.ones((2, 6), np.float32)
    assert pylm.ops.qmatmul(x, w, "Q8_0", (6, 64), out=out, accumulate=True) is out
    np.testing.assert_allclose(out, ref + 1, rtol=1e-6)
    with pytest.raises(ValueError, match="accumulate"):
        pylm.ops.qmatmul(x, w, "Q8_0", (6, 64), accumulate=True)


# ---- numerics (GPU) ----

def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    return torch


def random_weights(qtype, n, k, rng):
    """GGUF bytes (n, k/bs*ts) uint8: real quantization for the legacy formats, random blocks with
    finite fp16 scales for the K-quants (gguf cannot quantize those)."""
    if qtype in ("Q4_K", "Q5_K", "Q6_K"):
        bs, ts = gguf.GGML_QUANT_SIZES[T[qtype]]
        nb = n * k // bs
        raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
        for o in {"Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[qtype]:
            raw[:, o: o + 2] = np.frombuffer(
                rng.uniform(-0.05, 0.05, nb).astype(np.float16).tobytes(), np.uint8).reshape(nb, 2)
        return raw.reshape(n, -1)
    return quants.quantize(rng.standard_normal((n, k)).astype(np.float32), T[qtype])


def _round(x64, td, torch):
    return torch.from_numpy(x64).to(td).to(torch.float64).numpy()


@needs_gpu
@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("xdtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("M", [1, 3, 8, 9, 70])
def test_qmatmul_matches_float64(qtype, xdtype, M):
    torch = _torch_cuda()
    rng = np.random.default_rng(M + len(qtype))
    N, K = 300, 512
    raw = random_weights(qtype, N, K, rng)
    w64 = quants.dequantize(raw, T[qtype]).reshape(N, K).astype(np.float64)
    td = getattr(torch, xdtype)
    x64 = _round(rng.standard_normal((M, K)), td, torch)
    ref = x64 @ w64.T
    x = torch.from_numpy(x64).to(td).cuda()
    w = torch.from_numpy(np.ascontiguousarray(raw).reshape(-1)).cuda()
    y = pylm.ops.qmatmul(x, w, qtype, (N, K))
    torch.cuda.synchronize()
    got = y.double().cpu().numpy()
    # Tolerance: fp32 accumulation floor; M > 8 runs the tensor cores on 16-bit operands, so add
    # twice the error of the same product with both operands rounded to that 16-bit type.
    mag = np.abs(x64) @ np.abs(w64).T
    tol = 1e-5 * mag.max()
    if M > 8:
        t16 = torch.bfloat16 if xdtype == "bfloat16" else torch.float16
        r16 = _round(x64, t16, torch) @ _round(w64, t16, torch).T
        tol += 2 * np.abs(r16 - ref).max()
    err = np.abs(got - ref).max()
    assert err <= tol, f"{qtype} M={M} x={xdtype}: max error {err} > {tol}"
    if xdtype == "float32":  # and the CPU kernel on the same inputs (it quantizes x to 8 bits)
        cpu = pylm.ops.qmatmul(x64.astype(np.float32), raw, qtype, (N, K)).astype(np.float64)
        assert np.abs(got - cpu).max() <= 0.05 * mag.max()


@needs_gpu
@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("M", [2, 40])
def test_qmatmul_dense_weights(qtype, M):
    torch = _torch_cuda()
    rng = np.random.default_rng(3)
    N, K = 96, 200
    td = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[qtype]
    w64 = _round(rng.standard_normal((N, K)), td, torch)
    x64 = rng.standard_normal((M, K)).astype(np.float32).astype(np.float64)
    w = torch.from_numpy(w64).to(td).cuda()
    y = pylm.ops.qmatmul(torch.from_numpy(x64).float().cuda(), w, qtype, (N, K))
    torch.cuda.synchronize()
    xr = _round(x64, td, torch)  # x is converted to W's dtype
    ref = xr @ w64.T
    tol = 2e-5 * (np.abs(xr) @ np.abs(w64).T).max()
    assert np.abs(y.double().cpu().numpy() - ref).max() <= tol


@needs_gpu
@pytest.mark.parametrize("M", [1, 4, 33])
def test_qmatmul_accumulate_fuses_residual(M):
    torch = _torch_cuda()
    rng = np.random.default_rng(4)
    N, K = 64, 256
    raw = random_weights("Q4_K", N, K, rng)
    w64 = quants.dequantize(raw, T.Q4_K).reshape(N, K).astype(np.float64)
    x = rng.standard_normal((M, K)).astype(np.float32)
    res = rng.standard_normal((M, N)).astype(np.float32)
    out = torch.from_numpy(res).cuda()
    pylm.ops.qmatmul(torch.from_numpy(x).cuda(), torch.from_numpy(raw.reshape(-1)).cuda(),
                     T.Q4_K, (N, K), out=out, accumulate=True)
    torch.cuda.synchronize()
    ref = res + x.astype(np.float64) @ w64.T
    mag = (np.abs(x) @ np.abs(w64).T).max()
    assert np.abs(out.double().cpu().numpy() - ref).max() <= 1e-3 * mag


# ---- the GEMV/dequant decoders themselves, compiled for the host (needs nvcc, not a GPU) ----

_HOST_HARNESS = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "qmatmul_decode.cuh"
using namespace pylm::cuda::qdec;
template <int QT> void run(const uint8_t* raw, int K, int rows, long rb, float* out) {
    for (int r = 0; r < rows; ++r)
        for (int u = 0; u < K / Fmt<QT>::UNIT; ++u)
            Fmt<QT>::decode(raw + r * rb, u, out + (long)r * K + u * Fmt<QT>::UNIT);
}
int main(int argc, char** argv) {
    int qt = atoi(argv[1]), K = atoi(argv[3]), rows = atoi(argv[4]);
    long rb = atol(argv[5]);
    std::vector<uint8_t> buf(rb * rows + 16);
    uint8_t* raw = (uint8_t*)(((uintptr_t)buf.data() + 15) & ~(uintptr_t)15);
    FILE* f = fopen(argv[2], "rb");
    if (fread(raw, 1, rb * rows, f) != (size_t)(rb * rows)) return 2;
    fclose(f);
    std::vector<float> out((size_t)K * rows);
    switch (qt) {
        case 2: run<2>(raw, K, rows, rb, out.data()); break;
        case 3: run<3>(raw, K, rows, rb, out.data()); break;
        case 6: run<6>(raw, K, rows, rb, out.data()); break;
        case 8: run<8>(raw, K, rows, rb, out.data()); break;
        case 12: run<12>(raw, K, rows, rb, out.data()); break;
        case 13: run<13>(raw, K, rows, rb, out.data()); break;
        case 14: run<14>(raw, K, rows, rb, out.data()); break;
        default: return 3;
    }
    FILE* o = fopen(argv[6], "wb");
    fwrite(out.data(), 4, out.size(), o);
    fclose(o);
    return 0;
}
"""


@pytest.fixture(scope="module")
def decode_harness(tmp_path_factory):
    import shutil
    import subprocess
    from pathlib import Path

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    root = Path(__file__).resolve().parents[1]
    d = tmp_path_factory.mktemp("qdec")
    (d / "h.cu").write_text(_HOST_HARNESS)
    subprocess.run([nvcc, "-std=c++17", "-O1", f"-I{root / 'cuda'}", f"-I{root / 'csrc'}",
                    str(d / "h.cu"), "-o", str(d / "h")], check=True, capture_output=True)
    return d


@pytest.mark.parametrize("qtype", QTYPES)
def test_decoders_bit_exact_on_host(decode_harness, qtype):
    """cuda/qmatmul_decode.cuh, run on the CPU, reproduces gguf.quants.dequantize exactly."""
    import subprocess

    rng = np.random.default_rng(7)
    rows, K = 5, 512
    raw = np.ascontiguousarray(random_weights(qtype, rows, K, rng))
    ref = quants.dequantize(raw, T[qtype]).reshape(rows, K)
    d = decode_harness
    raw.tofile(d / f"{qtype}.bin")
    subprocess.run([str(d / "h"), str(int(T[qtype])), str(d / f"{qtype}.bin"), str(K), str(rows),
                    str(raw.shape[1]), str(d / f"{qtype}.out")], check=True)
    got = np.fromfile(d / f"{qtype}.out", np.float32).reshape(rows, K)
    np.testing.assert_array_equal(got, ref.astype(np.float32))
