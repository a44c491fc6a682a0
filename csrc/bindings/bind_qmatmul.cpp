// Python bindings for the quantized matmul (pylm.ops.qmatmul wraps these).
//
//   qmatmul(x [M, K] f32, w uint8 (any contiguous shape), qtype, N, K, threads) -> y [M, N] f32
//   _quantize_act(x [M, K] f32, qtype) -> uint8 [M, act_row_bytes]   (tests: activation bytes)
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "quant/qmatmul.h"

namespace pylm {

namespace {

// qtype as a name ("Q4_K"), a ggml type id, or a gguf.GGMLQuantizationType (an int).
const QTypeInfo* resolve_qtype(const py::handle& qtype) {
    const QTypeInfo* info = nullptr;
    std::string shown;
    if (py::isinstance<py::str>(qtype)) {
        shown = "'" + qtype.cast<std::string>() + "'";
        info = qtype_info_by_name(qtype.cast<std::string>().c_str());
    } else if (py::isinstance<py::int_>(qtype)) {
        const long long id = qtype.cast<long long>();
        shown = std::to_string(id);
        if (id >= 0 && id < 1 << 16) info = qtype_info((int)id);
    } else {
        throw std::invalid_argument("qmatmul: qtype must be a name or a ggml type id, got " +
                                    std::string(py::str(qtype)));
    }
    if (!info) throw std::invalid_argument("qmatmul: unknown qtype " + shown);
    if (!qdot_supported(info->type))
        throw std::invalid_argument(std::string("qmatmul: weight type ") + info->name +
                                    " is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, "
                                    "Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K are)");
    return info;
}

// packed: W is packed first (qdot.h) and goes through the active ISA's gemm_packed (tests).
py::array_t<float> qmatmul_py(const py::handle& x_obj, const py::handle& w_obj,
                              const py::handle& qtype, int64_t N, int64_t K, int threads,
                              bool packed = false) {
    const QTypeInfo* info = resolve_qtype(qtype);
    if (packed && !qdot_kernels(info->type)->gemm_packed)
        throw std::invalid_argument(std::string("qmatmul: no packed kernel for ") + info->name +
                                    " on this ISA");
    auto x = as_f32(x_obj, "qmatmul: x");
    check_ndim(x, 2, "qmatmul: x");
    auto w = as_u8(w_obj, "qmatmul: w_raw");
    if (N <= 0 || K <= 0) {
        throw std::invalid_argument("qmatmul: shape must be positive, got (" + std::to_string(N) +
                                    ", " + std::to_string(K) + ")");
    }
    const std::string wshape = "(" + std::to_string(N) + ", " + std::to_string(K) + ")";
    if (K % info->block_size != 0) {
        throw std::invalid_argument("qmatmul: K=" + std::to_string(K) +
                                    " is not a multiple of the " + info->name + " block size " +
                                    std::to_string(info->block_size));
    }
    if (x.shape(1) != K) {
        throw std::invalid_argument("qmatmul: x.shape[-1]=" + std::to_string(x.shape(1)) +
                                    " but W has K=" + std::to_string(K) + " columns (shape " +
                                    wshape + ")");
    }
    const int64_t need = N * qrow_bytes(info->type, K);
    if ((int64_t)w.nbytes() != need) {
        throw std::invalid_argument("qmatmul: w_raw has " + std::to_string(w.nbytes()) +
                                    " bytes but a " + info->name + " " + wshape + " matrix needs " +
                                    std::to_string(need));
    }
    const int nt = resolve_threads(threads);
    const int64_t M = x.shape(0);
    py::array_t<float> y({M, N});
    const float* xp = x.data();
    const uint8_t* wp = w.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release release;
        std::vector<uint8_t> wq;
        if (packed) {
            wq.resize((size_t)need);
            qdot_pack_rows(info->type, wp, N, K, wq.data());
        }
        qmatmul(xp, M, wp, info->type, N, K, yp, N, nt, packed ? wq.data() : nullptr);
    }
    return y;
}

py::array_t<uint8_t> quantize_act_py(const py::handle& x_obj, const py::handle& qtype) {
    const QTypeInfo* info = resolve_qtype(qtype);
    auto x = as_f32(x_obj, "quantize_act: x");
    check_ndim(x, 2, "quantize_act: x");
    const int64_t M = x.shape(0), K = x.shape(1);
    if (K % info->block_size != 0) {
        throw std::invalid_argument("quantize_act: K=" + std::to_string(K) +
                                    " is not a multiple of " + std::to_string(info->block_size));
    }
    const int64_t stride = act_row_bytes(act_format(info->type), K);
    py::array_t<uint8_t> out({M, stride});
    std::memset(out.mutable_data(), 0, (size_t)(M * stride));
    qmatmul_quantize(x.data(), M, K, info->type, out.mutable_data(), 1);
    return out;
}

// One row through the per-type vec_dot of the active ISA (tests the kernel table directly).
float vec_dot_py(const py::handle& x_obj, const py::handle& w_obj, const py::handle& qtype) {
    const QTypeInfo* info = resolve_qtype(qtype);
    auto x = as_f32(x_obj, "vec_dot: x");
    check_ndim(x, 1, "vec_dot: x");
    auto w = as_u8(w_obj, "vec_dot: w_row");
    const int64_t K = x.shape(0);
    if (K % info->block_size != 0 || (int64_t)w.nbytes() != qrow_bytes(info->type, K))
        throw std::invalid_argument("vec_dot: w_row / x size mismatch for " +
                                    std::string(info->name));
    const ActFormat f = act_format(info->type);
    std::vector<uint8_t> act((size_t)act_row_bytes(f, K) + 64);
    uint8_t* row = act.data() + (64 - reinterpret_cast<uintptr_t>(act.data()) % 64) % 64;
    quantize_act(f, x.data(), K, row);
    return qdot_kernels(info->type)->vec_dot(K, w.data(), row);
}

}  // namespace

void bind_qmatmul(py::module_& m) {
    m.def(
        "qmatmul",
        [](const py::handle& x, const py::handle& w, const py::handle& qtype, int64_t N, int64_t K,
           int threads) { return qmatmul_py(x, w, qtype, N, K, threads); },
        py::arg("x"), py::arg("w"), py::arg("qtype"), py::arg("N"),
          py::arg("K"), py::arg("threads") = 0,
          "y [M, N] = x [M, K] @ W^T, W given as the raw GGUF bytes of an (N, K) matrix.");
    m.def(
        "_qmatmul_packed",
        [](const py::handle& x, const py::handle& w, const py::handle& qtype, int64_t N, int64_t K,
           int threads) { return qmatmul_py(x, w, qtype, N, K, threads, true); },
        py::arg("x"), py::arg("w"), py::arg("qtype"), py::arg("N"), py::arg("K"),
        py::arg("threads") = 0,
        "qmatmul with W packed first (qdot.h) and the active ISA's packed kernel (tests).");
    m.def("_quantize_act", &quantize_act_py, py::arg("x"), py::arg("qtype"),
          "The activation rows qmatmul builds for weight type qtype (Q8S / Q8K bytes).");
    m.def("_vec_dot", &vec_dot_py, py::arg("x"), py::arg("w_row"), py::arg("qtype"),
          "dot(W row, x) through the active ISA's vec_dot kernel.");
}

}  // namespace pylm
