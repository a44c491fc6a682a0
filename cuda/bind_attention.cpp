// Python bindings of the CUDA attention area (see bind.h): flash_attn and paged_attn.
//
// Arguments are device arrays (dev_tensor: __cuda_array_interface__ or DLPack, so torch bfloat16
// too). Everything is validated here, before the device is touched (ValueError naming the
// value); then DeviceScope raises RuntimeError when no GPU is usable (never a CPU fallback),
// selects the arrays' device and orders `stream` after their producers. out=None allocates
// through pylm.ops.attention._empty_for_binding (q's library, else a pylm.cuda.Array).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "attention.cuh"
#include "bind.h"
#include "interop.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

[[noreturn]] void bad(const char* fn, const std::string& msg) {
    throw std::invalid_argument(std::string(fn) + ": " + msg);
}

// A [B, T, H, D] device array (a 3-D [T, H, D] one reads as B = 1): heads D apart, D contiguous.
struct Bthd {
    DevTensor t;
    int64_t B = 0, T = 0, H = 0, D = 0, sb = 0, st = 0;
};

Bthd as_bthd(py::handle obj, const char* name, const char* fn, int64_t stream) {
    Bthd a;
    a.t = dev_tensor(obj, name, stream);
    const auto& sh = a.t.shape;
    const auto& sd = a.t.strides;
    if (sh.size() == 4) {
        a.B = sh[0], a.T = sh[1], a.H = sh[2], a.D = sh[3], a.sb = sd[0], a.st = sd[1];
    } else if (sh.size() == 3) {
        a.B = 1, a.T = sh[0], a.H = sh[1], a.D = sh[2], a.sb = 0, a.st = sd[0];
    } else {
        bad(fn, std::string(name) + ": expected [B, T, H, D] (or [T, H, D]), got shape " +
                    a.t.shape_str());
    }
    const size_t n = sh.size();
    if ((a.D > 1 && sd[n - 1] != 1) || (a.H > 1 && sd[n - 2] != a.D))
        bad(fn, std::string(name) + ": heads must be D apart with D contiguous, got shape " +
                    a.t.shape_str() + " and element strides (" + str(sd[n - 2]) + ", " +
                    str(sd[n - 1]) + ") for the last two dims");
    return a;
}

void check_head_dim(const char* fn, int64_t D) {
    if (D != 64 && D != 128 && D != 256)
        bad(fn, "head dim D=" + str(D) + " is not supported (64, 128 or 256)");
}

void check_float(const char* fn, const DevTensor& t, const char* name) {
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
        bad(fn, std::string(name) + ": expected float32/float16/bfloat16, got " +
                    dtype_name(t.dtype));
}

void check_same_dtype(const char* fn, const DevTensor& t, const char* name, DType want,
                      const char* ref) {
    if (t.dtype != want)
        bad(fn, std::string(name) + ": dtype " + dtype_name(t.dtype) + " differs from " + ref +
                    " (" + dtype_name(want) + ")");
}

// The tensor-core path copies 16-byte chunks: pointers 16-byte aligned, strides multiples of 8.
void check_aligned(const char* fn, const Bthd& a, const char* name) {
    if (a.t.dtype == DType::F32) return;
    if (reinterpret_cast<uintptr_t>(a.t.ptr) % 16 != 0 || a.sb % 8 != 0 || a.st % 8 != 0)
        bad(fn, std::string(name) + ": 16-bit inputs need a 16-byte aligned pointer and batch/time"
                                    " strides that are multiples of 8 elements (strides " +
                    str(a.sb) + ", " + str(a.st) + ")");
}

py::object empty_like(py::handle q) {
    return py::module_::import("pylm.ops.attention").attr("_empty_for_binding")(q);
}

py::object flash_attn(py::object q_obj, py::object k_obj, py::object v_obj, bool causal,
                      py::object scale, int64_t window, double softcap, py::object q_offset,
                      py::object out_obj, py::object lse_obj, int64_t stream) {
    const char* fn = "flash_attn";
    const Bthd q = as_bthd(q_obj, "q", fn, stream), k = as_bthd(k_obj, "k", fn, stream),
               v = as_bthd(v_obj, "v", fn, stream);
    check_float(fn, q.t, "q");
    check_same_dtype(fn, k.t, "k", q.t.dtype, "q");
    check_same_dtype(fn, v.t, "v", q.t.dtype, "q");
    check_head_dim(fn, q.D);
    if (k.t.shape.size() != q.t.shape.size() || v.t.shape.size() != q.t.shape.size())
        bad(fn, "q, k, v must have the same rank, got q " + q.t.shape_str() + ", k " +
                    k.t.shape_str() + ", v " + v.t.shape_str());
    if (k.B != q.B || k.D != q.D || v.B != k.B || v.T != k.T || v.H != k.H || v.D != k.D)
        bad(fn, "shapes do not match: q " + q.t.shape_str() + ", k " + k.t.shape_str() + ", v " +
                    v.t.shape_str() + " (want q [B, Tq, Hq, D], k and v [B, Tk, Hkv, D])");
    if (k.H < 1 || q.H % k.H != 0)
        bad(fn, "Hq=" + str(q.H) + " is not a multiple of Hkv=" + str(k.H));
    if (q.B > 65535 || q.H > 65535)
        bad(fn, "B=" + str(q.B) + " and Hq=" + str(q.H) + " must each be <= 65535");
    if (q.T > INT_MAX / 2 || k.T > INT_MAX / 2)
        bad(fn, "sequence too long: Tq=" + str(q.T) + ", Tk=" + str(k.T));
    if (window < 0) bad(fn, "window=" + str(window) + " must be >= 0");
    if (window > 0 && !causal) bad(fn, "window=" + str(window) + " needs causal=True");
    if (!(softcap >= 0.0)) bad(fn, "softcap=" + std::to_string(softcap) + " must be >= 0");
    int64_t qoff = q_offset.is_none() ? (causal ? k.T - q.T : 0) : q_offset.cast<int64_t>();
    if (qoff < 0 || qoff > INT_MAX / 2)
        bad(fn, "q_offset=" + str(qoff) + " must be >= 0 (Tq=" + str(q.T) + ", Tk=" + str(k.T) +
                    "; pass q_offset when Tq > Tk)");
    const double sc = scale.is_none() ? 1.0 / std::sqrt(static_cast<double>(q.D))
                                      : scale.cast<double>();
    if (!std::isfinite(sc)) bad(fn, "scale=" + std::to_string(sc) + " must be finite");
    check_aligned(fn, q, "q");
    check_aligned(fn, k, "k");
    check_aligned(fn, v, "v");

    if (out_obj.is_none()) out_obj = empty_like(q_obj);
    const Bthd o = as_bthd(out_obj, "out", fn, stream);
    check_same_dtype(fn, o.t, "out", q.t.dtype, "q");
    if (o.t.shape != q.t.shape)
        bad(fn, "out: shape " + o.t.shape_str() + " differs from q " + q.t.shape_str());
    if (o.t.readonly) bad(fn, "out: read-only array");
    check_aligned(fn, o, "out");
    float* lse_ptr = nullptr;
    DevTensor l;
    if (!lse_obj.is_none()) {
        l = dev_tensor(lse_obj, "lse", stream);
        if (l.dtype != DType::F32) bad(fn, std::string("lse: expected float32, got ") + dtype_name(l.dtype));
        if (l.numel() != q.B * q.H * q.T || !l.contiguous() || l.readonly)
            bad(fn, "lse: expected a writable contiguous float32 [B, Hq, Tq] = [" + str(q.B) +
                        ", " + str(q.H) + ", " + str(q.T) + "], got shape " + l.shape_str());
        lse_ptr = static_cast<float*>(l.ptr);
    }
    DeviceScope scope({&q.t, &k.t, &v.t, &o.t, &l}, {"q", "k", "v", "out", "lse"}, stream);

    FlashAttnParams p;
    p.dtype = q.t.dtype;
    p.q = q.t.ptr, p.k = k.t.ptr, p.v = v.t.ptr, p.o = o.t.ptr, p.lse = lse_ptr;
    p.B = static_cast<int>(q.B), p.Tq = static_cast<int>(q.T), p.Tk = static_cast<int>(k.T);
    p.Hq = static_cast<int>(q.H), p.Hkv = static_cast<int>(k.H), p.D = static_cast<int>(q.D);
    p.q_stride_b = q.sb, p.q_stride_t = q.st, p.k_stride_b = k.sb, p.k_stride_t = k.st;
    p.v_stride_b = v.sb, p.v_stride_t = v.st, p.o_stride_b = o.sb, p.o_stride_t = o.st;
    p.scale = static_cast<float>(sc);
    p.causal = causal;
    p.q_offset = static_cast<int>(qoff);
    p.window = static_cast<int>(window > INT_MAX ? INT_MAX : window);
    p.softcap = static_cast<float>(softcap);
    {
        py::gil_scoped_release nogil;
        flash_attn_fwd(p, as_stream(static_cast<uintptr_t>(stream)));
    }
    return out_obj;
}

py::object paged_attn(py::object q_obj, py::object k_obj, py::object v_obj, py::object bt_obj,
                      py::object cl_obj, py::object scale, int64_t window, double softcap,
                      py::object out_obj, py::object max_ctx_obj, int64_t stream) {
    const char* fn = "paged_attn";
    DevTensor q = dev_tensor(q_obj, "q", stream);
    if (q.shape.size() != 3 && q.shape.size() != 4)
        bad(fn, "q: expected [S, Tq, Hq, D] (or [S, Hq, D]), got shape " + q.shape_str());
    check_float(fn, q, "q");
    expect_contiguous(q, "q");
    const bool q3 = q.shape.size() == 3;
    const int64_t S = q.shape[0], Tq = q3 ? 1 : q.shape[1], Hq = q.shape[q3 ? 1 : 2],
                  D = q.shape.back();
    check_head_dim(fn, D);
    DevTensor kc = dev_tensor(k_obj, "k_cache", stream), vc = dev_tensor(v_obj, "v_cache", stream);
    if (kc.shape.size() != 4)
        bad(fn, "k_cache: expected [num_blocks, block_size, Hkv, D], got shape " + kc.shape_str());
    check_float(fn, kc, "k_cache");
    check_same_dtype(fn, vc, "v_cache", kc.dtype, "k_cache");
    if (vc.shape != kc.shape)
        bad(fn, "v_cache: shape " + vc.shape_str() + " differs from k_cache " + kc.shape_str());
    expect_contiguous(kc, "k_cache");
    expect_contiguous(vc, "v_cache");
    const int64_t block_size = kc.shape[1], Hkv = kc.shape[2];
    if (kc.shape[3] != D)
        bad(fn, "k_cache: head dim " + str(kc.shape[3]) + " differs from q's D=" + str(D));
    if (Hkv < 1 || Hq % Hkv != 0) bad(fn, "Hq=" + str(Hq) + " is not a multiple of Hkv=" + str(Hkv));
    if (block_size < 1) bad(fn, "k_cache: block_size=" + str(block_size) + " must be >= 1");
    for (const DevTensor* c : {&kc, &vc})
        if (reinterpret_cast<uintptr_t>(c->ptr) % 16 != 0)
            bad(fn, "k_cache/v_cache: data pointer must be 16-byte aligned");
    DevTensor bt = dev_tensor(bt_obj, "block_tables", stream);
    DevTensor cl = dev_tensor(cl_obj, "context_lens", stream);
    expect_dtype(bt, "block_tables", {DType::I32});
    expect_dtype(cl, "context_lens", {DType::I32});
    expect_ndim(bt, "block_tables", 2);
    expect_ndim(cl, "context_lens", 1);
    expect_contiguous(bt, "block_tables");
    expect_contiguous(cl, "context_lens");
    if (bt.shape[0] != S || cl.shape[0] != S)
        bad(fn, "block_tables " + bt.shape_str() + " and context_lens " + cl.shape_str() +
                    " must have S=" + str(S) + " rows (q " + q.shape_str() + ")");
    if (S > 65535) bad(fn, "S=" + str(S) + " sequences exceed 65535 per call");
    const int64_t cap = bt.shape[1] * block_size;
    const int64_t max_ctx = max_ctx_obj.is_none() ? cap : max_ctx_obj.cast<int64_t>();
    if (max_ctx < 0 || max_ctx > cap || max_ctx > INT_MAX / 2)
        bad(fn, "max_context_len=" + str(max_ctx) + " must be in [0, max_blocks_per_seq * "
                                                    "block_size = " + str(cap) + "]");
    if (window < 0) bad(fn, "window=" + str(window) + " must be >= 0");
    if (!(softcap >= 0.0)) bad(fn, "softcap=" + std::to_string(softcap) + " must be >= 0");
    const double sc = scale.is_none() ? 1.0 / std::sqrt(static_cast<double>(D))
                                      : scale.cast<double>();
    if (!std::isfinite(sc)) bad(fn, "scale=" + std::to_string(sc) + " must be finite");

    if (out_obj.is_none()) out_obj = empty_like(q_obj);
    DevTensor o = dev_tensor(out_obj, "out", stream);
    check_same_dtype(fn, o, "out", q.dtype, "q");
    if (o.shape != q.shape) bad(fn, "out: shape " + o.shape_str() + " differs from q " + q.shape_str());
    expect_contiguous(o, "out");
    if (o.readonly) bad(fn, "out: read-only array");
    DeviceScope scope({&q, &kc, &vc, &bt, &cl, &o},
                      {"q", "k_cache", "v_cache", "block_tables", "context_lens", "out"}, stream);

    PagedAttnParams p;
    p.q_dtype = q.dtype, p.kv_dtype = kc.dtype;
    p.q = q.ptr, p.o = o.ptr, p.k_cache = kc.ptr, p.v_cache = vc.ptr;
    p.block_tables = static_cast<const int32_t*>(bt.ptr);
    p.context_lens = static_cast<const int32_t*>(cl.ptr);
    p.S = static_cast<int>(S), p.Tq = static_cast<int>(Tq), p.Hq = static_cast<int>(Hq);
    p.Hkv = static_cast<int>(Hkv), p.D = static_cast<int>(D);
    p.block_size = static_cast<int>(block_size);
    p.max_blocks_per_seq = static_cast<int>(bt.shape[1]);
    p.max_context_len = static_cast<int>(max_ctx);
    p.scale = static_cast<float>(sc);
    p.window = static_cast<int>(window > INT_MAX ? INT_MAX : window);
    p.softcap = static_cast<float>(softcap);
    {
        py::gil_scoped_release nogil;
        const cudaStream_t st = as_stream(static_cast<uintptr_t>(stream));
        const size_t ws = paged_attn_workspace_bytes(p);
        if (ws > 0) PYLM_CUDA_CHECK(cudaMallocAsync(&p.workspace, ws, st));
        try {
            paged_attn_decode(p, st);
        } catch (...) {
            if (p.workspace) cudaFreeAsync(p.workspace, st);
            throw;
        }
        if (p.workspace) PYLM_CUDA_CHECK(cudaFreeAsync(p.workspace, st));
    }
    return out_obj;
}

}  // namespace

void bind_attention(py::module_& m) {
    m.def("flash_attn", &flash_attn, py::arg("q"), py::arg("k"), py::arg("v"),
          py::arg("causal") = true, py::arg("scale") = py::none(), py::arg("window") = 0,
          py::arg("softcap") = 0.0, py::arg("q_offset") = py::none(), py::arg("out") = py::none(),
          py::arg("lse") = py::none(), py::arg("stream") = 0,
          "Flash attention forward on device arrays: q [B, Tq, Hq, D], k/v [B, Tk, Hkv, D] "
          "(float32/float16/bfloat16, D in 64/128/256). Returns out [B, Tq, Hq, D]; lse "
          "(optional float32 [B, Hq, Tq]) receives the log-sum-exp of the scaled scores.");
    m.def("paged_attn", &paged_attn, py::arg("q"), py::arg("k_cache"), py::arg("v_cache"),
          py::arg("block_tables"), py::arg("context_lens"), py::arg("scale") = py::none(),
          py::arg("window") = 0, py::arg("softcap") = 0.0, py::arg("out") = py::none(),
          py::arg("max_context_len") = py::none(), py::arg("stream") = 0,
          "Decode attention over a paged KV cache: q [S, Tq, Hq, D], caches [num_blocks, "
          "block_size, Hkv, D], block_tables int32 [S, max_blocks], context_lens int32 [S].");
}

}  // namespace cuda
}  // namespace pylm
