// Python bindings of the CUDA elementwise area (see bind.h; launchers: elementwise.cuh,
// dequant.cuh). Every binding takes device arrays (dev_tensor: __cuda_array_interface__ or
// DLPack), validates them (ValueError naming the value) before touching the GPU, then runs the
// launcher with the GIL released on `stream` (a cudaStream_t as an integer, 0 = legacy default).
// Outputs are written into `out` arrays the caller allocates (pylm/cuda/ops.py does).
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "bind.h"
#include "bindings/qtype_arg.h"
#include "dequant.cuh"
#include "elementwise.cuh"
#include "interop.h"
#include "quant/blocks.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

namespace {

const std::initializer_list<DType> kFloat = {DType::F32, DType::F16, DType::BF16};

std::string S(const char* op, const char* arg) { return std::string(op) + ": " + arg; }

DevTensor arg(py::handle obj, const std::string& name, int64_t stream, bool writable = false) {
    DevTensor t = dev_tensor(obj, name.c_str(), stream);
    if (writable && t.readonly) throw std::invalid_argument(name + ": array is read-only");
    return t;
}

void same_shape(const DevTensor& a, const DevTensor& b, const std::string& an,
                const std::string& bn) {
    if (a.shape != b.shape)
        throw std::invalid_argument(bn + ".shape=" + b.shape_str() + " but " + an + ".shape=" +
                                    a.shape_str());
}

void same_dtype(const DevTensor& a, const DevTensor& b, const std::string& an,
                const std::string& bn) {
    if (a.dtype != b.dtype)
        throw std::invalid_argument(bn + ".dtype=" + dtype_name(b.dtype) + " but " + an +
                                    ".dtype=" + dtype_name(a.dtype));
}

// [..., C] contiguous -> (R, C).
void rows(const DevTensor& t, const std::string& name, int64_t& R, int64_t& C) {
    if (t.shape.empty())
        throw std::invalid_argument(name + ": expected at least 1 dimension, got shape " +
                                    t.shape_str());
    expect_contiguous(t, name.c_str());
    C = t.shape.back();
    R = C > 0 ? t.numel() / C : 0;
}

// [..., F] whose leading dims collapse into rows `ld` elements apart, last dim contiguous.
int64_t row_stride(const DevTensor& t, const std::string& name) {
    const int nd = static_cast<int>(t.shape.size());
    if (nd == 0) throw std::invalid_argument(name + ": expected at least 1 dimension");
    const int64_t F = t.shape[nd - 1];
    if (F > 1 && t.strides[nd - 1] != 1)
        throw std::invalid_argument(name + ": the last dimension must be contiguous");
    if (nd == 1) return F;
    for (int i = 0; i + 2 < nd; ++i)
        if (t.shape[i] > 1 && t.strides[i] != t.strides[i + 1] * t.shape[i + 1])
            throw std::invalid_argument(name + ": leading dimensions of shape " + t.shape_str() +
                                        " do not collapse into evenly spaced rows");
    const int64_t ld = t.shape[nd - 2] > 1 ? t.strides[nd - 2] : F;
    if (ld < F) throw std::invalid_argument(name + ": rows overlap (row stride < row length)");
    return ld;
}

void check_finite(float v, const char* what, bool positive) {
    if (!std::isfinite(v) || (positive ? !(v > 0.f) : v < 0.f))
        throw std::invalid_argument(std::string(what) + " must be finite and " +
                                    (positive ? "> 0" : ">= 0") + ", got " + std::to_string(v));
}

const QTypeInfo& qinfo(py::handle q, const char* op) {
    const QTypeInfo& info = parse_qtype(q, op);
    if (!dequant_supported(static_cast<int>(info.type)))
        throw std::invalid_argument(std::string(op) + ": unsupported qtype " + info.name);
    return info;
}

void rmsnorm_b(py::handle x, py::handle w, py::handle out, float eps, int64_t stream) {
    DevTensor tx = arg(x, "rmsnorm: x", stream), tw;
    expect_dtype(tx, "rmsnorm: x", kFloat);
    int64_t R, C;
    rows(tx, "rmsnorm: x", R, C);
    if (!w.is_none()) {
        tw = arg(w, "rmsnorm: weight", stream);
        expect_dtype(tw, "rmsnorm: weight", {DType::F32});
        expect_ndim(tw, "rmsnorm: weight", 1);
        expect_contiguous(tw, "rmsnorm: weight");
        if (tw.shape[0] != C)
            throw std::invalid_argument("rmsnorm: x.shape[-1]=" + std::to_string(C) +
                                        " but weight.shape[0]=" + std::to_string(tw.shape[0]));
    }
    DevTensor ty = arg(out, "rmsnorm: out", stream, true);
    same_dtype(tx, ty, "x", "rmsnorm: out");
    same_shape(tx, ty, "x", "rmsnorm: out");
    expect_contiguous(ty, "rmsnorm: out");
    check_finite(eps, "rmsnorm: eps", false);
    DeviceScope scope({&tx, &tw, &ty}, {"x", "weight", "out"}, stream);
    py::gil_scoped_release nogil;
    rmsnorm(tx.dtype, tx.ptr, static_cast<const float*>(tw.ptr), ty.ptr, R, C, eps,
            as_stream(stream));
}

void rope_b(py::handle x, py::handle pos, float base, bool neox, int rot_dim, float freq_scale,
            int64_t stream) {
    DevTensor tx = arg(x, "rope: x", stream, true);
    expect_dtype(tx, "rope: x", kFloat);
    expect_ndim(tx, "rope: x (T, H, D)", 3);
    const int64_t T = tx.shape[0], H = tx.shape[1], D = tx.shape[2];
    if ((D > 1 && tx.strides[2] != 1) || (H > 1 && tx.strides[1] != D))
        throw std::invalid_argument("rope: x must have contiguous heads (strides (*, D, 1)), shape " +
                                    tx.shape_str());
    const int64_t row = T > 1 ? tx.strides[0] : H * D;
    if (row < H * D)
        throw std::invalid_argument("rope: x token stride " + std::to_string(row) + " < H*D");
    DevTensor tp = arg(pos, "rope: positions", stream);
    expect_dtype(tp, "rope: positions", {DType::I32});
    expect_ndim(tp, "rope: positions", 1);
    expect_contiguous(tp, "rope: positions");
    if (tp.shape[0] != T)
        throw std::invalid_argument("rope: positions.shape=" + tp.shape_str() +
                                    " but x.shape[0]=" + std::to_string(T));
    if (rot_dim < 0) rot_dim = static_cast<int>(D);
    if (rot_dim == 0 || rot_dim % 2 != 0 || rot_dim > D)
        throw std::invalid_argument("rope: n_dims=" + std::to_string(rot_dim) +
                                    " must be even and in [2, head dim " + std::to_string(D) + "]");
    check_finite(base, "rope: base", true);
    check_finite(freq_scale, "rope: freq_scale", true);
    DeviceScope scope({&tx, &tp}, {"x", "positions"}, stream);
    py::gil_scoped_release nogil;
    rope(tx.dtype, tx.ptr, static_cast<const int32_t*>(tp.ptr), T, H, D, row, rot_dim, base,
         freq_scale, neox, as_stream(stream));
}

void softmax_b(py::handle x, py::handle out, float scale, int64_t stream) {
    DevTensor tx = arg(x, "softmax: x", stream);
    expect_dtype(tx, "softmax: x", kFloat);
    int64_t R, C;
    rows(tx, "softmax: x", R, C);
    DevTensor ty = arg(out, "softmax: out", stream, true);
    expect_dtype(ty, "softmax: out", {DType::F32});
    same_shape(tx, ty, "x", "softmax: out");
    expect_contiguous(ty, "softmax: out");
    if (ty.ptr == tx.ptr && tx.dtype != DType::F32)
        throw std::invalid_argument("softmax: out may alias x only when x is float32");
    if (!std::isfinite(scale))
        throw std::invalid_argument("softmax: scale must be finite, got " + std::to_string(scale));
    DeviceScope scope({&tx, &ty}, {"x", "out"}, stream);
    py::gil_scoped_release nogil;
    softmax(tx.dtype, tx.ptr, static_cast<float*>(ty.ptr), R, C, scale, as_stream(stream));
}

void glu_b(bool gelu, py::handle gate, py::handle up, py::handle out, int64_t stream) {
    const char* op = gelu ? "geglu" : "swiglu";
    DevTensor tg = arg(gate, S(op, "gate"), stream), tu = arg(up, S(op, "up"), stream);
    expect_dtype(tg, S(op, "gate").c_str(), kFloat);
    same_dtype(tg, tu, "gate", S(op, "up"));
    same_shape(tg, tu, "gate", S(op, "up"));
    const int64_t ld = row_stride(tg, S(op, "gate"));
    if (row_stride(tu, S(op, "up")) != ld)
        throw std::invalid_argument(std::string(op) + ": gate and up rows must be equally spaced");
    DevTensor ty = arg(out, S(op, "out"), stream, true);
    same_dtype(tg, ty, "gate", S(op, "out"));
    same_shape(tg, ty, "gate", S(op, "out"));
    int64_t R, F;
    rows(ty, S(op, "out"), R, F);
    DeviceScope scope({&tg, &tu, &ty}, {"gate", "up", "out"}, stream);
    py::gil_scoped_release nogil;
    (gelu ? geglu : swiglu)(tg.dtype, tg.ptr, tu.ptr, ld, ty.ptr, R, F, as_stream(stream));
}

void embedding_b(py::handle table, py::handle qtype, py::handle ids, py::handle out, float scale,
                 bool check_ids, int64_t stream) {
    const QTypeInfo& info = qinfo(qtype, "embedding");
    DevTensor tt = arg(table, "embedding: table", stream);
    expect_contiguous(tt, "embedding: table");
    DevTensor ti = arg(ids, "embedding: ids", stream);
    expect_dtype(ti, "embedding: ids", {DType::I32});
    expect_contiguous(ti, "embedding: ids");
    DevTensor to = arg(out, "embedding: out", stream, true);
    expect_dtype(to, "embedding: out", kFloat);
    expect_contiguous(to, "embedding: out");
    std::vector<int64_t> want = ti.shape;
    const int64_t C = to.shape.empty() ? 0 : to.shape.back();
    want.push_back(C);
    if (to.shape != want)
        throw std::invalid_argument("embedding: out.shape=" + to.shape_str() +
                                    " but ids.shape + (C,) needs " + std::to_string(want.size()) +
                                    " dims matching ids.shape=" + ti.shape_str());
    if (C <= 0 || C % info.block_size != 0)
        throw std::invalid_argument("embedding: C=out.shape[-1]=" + std::to_string(C) +
                                    " must be a positive multiple of " + info.name +
                                    "'s block size " + std::to_string(info.block_size));
    const int64_t row_bytes = C / info.block_size * info.type_size;
    const int64_t table_bytes = tt.numel() * dtype_size(tt.dtype);
    if (table_bytes % row_bytes != 0)
        throw std::invalid_argument("embedding: table has " + std::to_string(table_bytes) +
                                    " bytes, not a whole number of " + info.name + " rows of " +
                                    std::to_string(C) + " values (" + std::to_string(row_bytes) +
                                    " bytes)");
    const int64_t V = table_bytes / row_bytes, n = ti.numel();
    DeviceScope scope({&tt, &ti, &to}, {"table", "ids", "out"}, stream);
    py::gil_scoped_release nogil;
    if (check_ids && n > 0) {
        std::vector<int32_t> host(static_cast<size_t>(n));
        PYLM_CUDA_CHECK(cudaMemcpyAsync(host.data(), ti.ptr, n * sizeof(int32_t),
                                        cudaMemcpyDeviceToHost, as_stream(stream)));
        PYLM_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
        for (int64_t i = 0; i < n; ++i)
            if (host[i] < 0 || host[i] >= V)
                throw std::out_of_range("embedding: ids[" + std::to_string(i) + "]=" +
                                        std::to_string(host[i]) + " out of range for " +
                                        std::to_string(V) + " rows");
    }
    embedding(static_cast<int>(info.type), tt.ptr, C, static_cast<const int32_t*>(ti.ptr), n,
              scale, to.dtype, to.ptr, as_stream(stream));
}

void add_b(py::handle a, py::handle b, py::handle out, int64_t stream) {
    DevTensor ta = arg(a, "add: a", stream), tb = arg(b, "add: b", stream);
    DevTensor ty = arg(out, "add: out", stream, true);
    expect_dtype(ta, "add: a", kFloat);
    same_dtype(ta, tb, "a", "add: b");
    same_dtype(ta, ty, "a", "add: out");
    same_shape(ta, tb, "a", "add: b");
    same_shape(ta, ty, "a", "add: out");
    for (auto* t : {&ta, &tb, &ty}) expect_contiguous(*t, t == &ta ? "add: a" : t == &tb ? "add: b" : "add: out");
    DeviceScope scope({&ta, &tb, &ty}, {"a", "b", "out"}, stream);
    py::gil_scoped_release nogil;
    add(ta.dtype, ta.ptr, tb.ptr, ty.ptr, ta.numel(), as_stream(stream));
}

void dequantize_b(py::handle src, py::handle qtype, py::handle out, int64_t stream) {
    const QTypeInfo& info = qinfo(qtype, "dequantize");
    DevTensor ts = arg(src, "dequantize: raw", stream);
    expect_contiguous(ts, "dequantize: raw");
    DevTensor to = arg(out, "dequantize: out", stream, true);
    expect_dtype(to, "dequantize: out", {DType::F32, DType::F16});
    expect_contiguous(to, "dequantize: out");
    if (to.shape.empty() || to.shape.back() % info.block_size != 0)
        throw std::invalid_argument("dequantize: shape " + to.shape_str() +
                                    ": last dimension must be a multiple of " +
                                    std::to_string(info.block_size) + " for " + info.name);
    const int64_t n = to.numel(), nbytes = n / info.block_size * info.type_size;
    if (ts.numel() * dtype_size(ts.dtype) != nbytes)
        throw std::invalid_argument("dequantize: raw has " +
                                    std::to_string(ts.numel() * dtype_size(ts.dtype)) +
                                    " bytes, but " + info.name + " of shape " + to.shape_str() +
                                    " needs " + std::to_string(nbytes));
    DeviceScope scope({&ts, &to}, {"raw", "out"}, stream);
    py::gil_scoped_release nogil;
    if (to.dtype == DType::F32)
        dequantize(static_cast<int>(info.type), ts.ptr, static_cast<float*>(to.ptr), n,
                   as_stream(stream));
    else
        dequantize_f16(static_cast<int>(info.type), ts.ptr, to.ptr, n, as_stream(stream));
}

}  // namespace

void bind_elementwise(py::module_& m) {
    m.def("rmsnorm", &rmsnorm_b, py::arg("x"), py::arg("weight"), py::arg("out"), py::arg("eps"),
          py::arg("stream") = 0, "out[..., C] = x / sqrt(mean(x^2) + eps) * weight (out may be x).");
    m.def("rope", &rope_b, py::arg("x"), py::arg("positions"), py::arg("base"), py::arg("neox"),
          py::arg("n_dims") = -1, py::arg("freq_scale") = 1.0f, py::arg("stream") = 0,
          "Rotary embedding of x (T, H, D) in place at int32 positions (T,).");
    m.def("softmax", &softmax_b, py::arg("x"), py::arg("out"), py::arg("scale") = 1.0f,
          py::arg("stream") = 0, "out (float32) = softmax(scale * x) over the last axis.");
    m.def("swiglu", [](py::handle g, py::handle u, py::handle o, int64_t s) { glu_b(false, g, u, o, s); },
          py::arg("gate"), py::arg("up"), py::arg("out"), py::arg("stream") = 0,
          "out = silu(gate) * up; gate/up may be strided row views of one [R, 2F] array.");
    m.def("geglu", [](py::handle g, py::handle u, py::handle o, int64_t s) { glu_b(true, g, u, o, s); },
          py::arg("gate"), py::arg("up"), py::arg("out"), py::arg("stream") = 0,
          "out = gelu_tanh(gate) * up.");
    m.def("embedding", &embedding_b, py::arg("table"), py::arg("qtype"), py::arg("ids"),
          py::arg("out"), py::arg("scale") = 1.0f, py::arg("check_ids") = true,
          py::arg("stream") = 0,
          "out[..., C] = dequant(table)[ids] * scale; check_ids copies ids to the host first.");
    m.def("add", &add_b, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("stream") = 0,
          "out = a + b (out may be a).");
    m.def("dequantize_into", &dequantize_b, py::arg("raw"), py::arg("qtype"), py::arg("out"),
          py::arg("stream") = 0, "Dequantize GGUF bytes (device) into out (float32 or float16).");
}

}  // namespace cuda
}  // namespace pylm
