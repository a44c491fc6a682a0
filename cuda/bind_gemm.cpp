// Python bindings of the CUDA gemm area (see bind.h): pylm._cuda.gemm and pylm._cuda.qmatmul.
// Arguments are device arrays (__cuda_array_interface__); everything is validated here (ValueError
// naming the value) before the device is touched; no usable GPU -> RuntimeError. The output array
// is passed in (pylm.ops.gemm / pylm.ops.qmatmul allocate it with the caller's array library).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bind.h"
#include "gemm.cuh"
#include "interop.h"
#include "qmatmul.cuh"
#include "quant/blocks.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

namespace {

std::string s(int64_t v) { return std::to_string(v); }

// A 2-D device array as a BLAS operand: `trans` says whether the kernel must read it transposed
// (row-major storage of the transpose), ld is the stored row stride in elements.
struct Operand {
    int64_t rows, cols;  // logical shape of op(x)
    bool trans;
    int64_t ld;
};

Operand operand(const DevTensor& t, const char* name, bool want_trans) {
    expect_ndim(t, name, 2);
    const int64_t R = t.shape[0], C = t.shape[1], sr = t.strides[0], sc = t.strides[1];
    Operand o;
    bool col_major;
    if (sc == 1 || C == 1) {
        col_major = false;
        o.ld = R == 1 ? (C > 0 ? C : 1) : sr;
    } else if (sr == 1 || R == 1) {
        col_major = true;
        o.ld = C == 1 ? (R > 0 ? R : 1) : sc;
    } else {
        throw std::invalid_argument(std::string(name) +
                                    ": one dimension must have unit stride, got shape " +
                                    t.shape_str() + " strides (" + s(sr) + ", " + s(sc) + ")");
    }
    if (o.ld < 1) throw std::invalid_argument(std::string(name) + ": bad strides");
    // Stored row-major matrix: R x C (row-major) or C x R (column-major view).
    o.trans = want_trans != col_major;
    o.rows = want_trans ? C : R;
    o.cols = want_trans ? R : C;
    return o;
}

// Selects the device that owns `p`; ValueError when p is not device memory.
void select_device_of(const void* p, const char* name) {
    if (device_count() == 0)
        throw std::runtime_error("CUDA requested but no usable CUDA device was found");
    cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
        cudaGetLastError();
        throw std::invalid_argument(std::string(name) + ": not a CUDA device pointer");
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        throw std::invalid_argument(std::string(name) + ": not device memory");
    PYLM_CUDA_CHECK(cudaSetDevice(attr.device));
}

py::object gemm_py(py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a,
                   bool trans_b, float alpha, float beta, uintptr_t stream) {
    const DevTensor a = dev_tensor(a_obj, "a");
    const DevTensor b = dev_tensor(b_obj, "b");
    if (c_obj.is_none())
        throw std::invalid_argument("c: required here (pylm.ops.gemm allocates it for you)");
    const DevTensor c = dev_tensor(c_obj, "c");
    expect_dtype(a, "a", {DType::F32, DType::F16, DType::BF16});
    if (b.dtype != a.dtype)
        throw std::invalid_argument(std::string("b: dtype ") + dtype_name(b.dtype) +
                                    " differs from a's " + dtype_name(a.dtype));
    if (c.dtype != DType::F32 && c.dtype != a.dtype)
        throw std::invalid_argument(std::string("c: dtype ") + dtype_name(c.dtype) +
                                    " must be float32 or " + dtype_name(a.dtype));
    if (c.readonly) throw std::invalid_argument("c: read-only array");
    const Operand oa = operand(a, "a", trans_a), ob = operand(b, "b", trans_b);
    if (oa.cols != ob.rows)
        throw std::invalid_argument("gemm: op(a) is (" + s(oa.rows) + ", " + s(oa.cols) +
                                    ") but op(b) is (" + s(ob.rows) + ", " + s(ob.cols) + ")");
    const Operand oc = operand(c, "c", false);
    if (oc.rows != oa.rows || oc.cols != ob.cols)
        throw std::invalid_argument("c: shape " + c.shape_str() + ", expected (" + s(oa.rows) +
                                    ", " + s(ob.cols) + ")");
    if (oc.trans) throw std::invalid_argument("c: rows must be contiguous, shape " + c.shape_str());
    const int64_t M = oa.rows, N = ob.cols, K = oa.cols;
    if (M == 0 || N == 0) return py::reinterpret_borrow<py::object>(c_obj);
    select_device_of(c.ptr, "c");
    {
        py::gil_scoped_release nogil;
        gemm(oa.trans, ob.trans, M, N, K, alpha, a.dtype, a.ptr, oa.ld, b.ptr, ob.ld, beta,
             c.dtype, c.ptr, oc.ld, as_stream(stream));
    }
    return py::reinterpret_borrow<py::object>(c_obj);
}

const QTypeInfo& qtype_of(py::handle q) {
    const QTypeInfo* info = nullptr;
    std::string shown;
    if (py::isinstance<py::str>(q)) {
        shown = q.cast<std::string>();
        info = qtype_info_by_name(shown.c_str());
    } else {
        int id;
        try {
            id = q.cast<int>();
        } catch (const py::cast_error&) {
            throw std::invalid_argument("qtype: expected a name or a GGUF type id, got " +
                                        std::string(py::str(py::type::of(q))));
        }
        shown = std::to_string(id);
        info = qtype_info(id);
    }
    if (!info || !qmatmul_supported(static_cast<int>(info->type)))
        throw std::invalid_argument("qtype: '" + shown +
                                    "' is not supported on CUDA (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, "
                                    "Q5_K, Q6_K, F32, F16, BF16)");
    return *info;
}

py::object qmatmul_py(py::handle w_obj, py::handle qtype, int64_t N, int64_t K, py::handle x_obj,
                      py::handle y_obj, bool accumulate, uintptr_t stream) {
    const QTypeInfo& info = qtype_of(qtype);
    if (N < 0 || K < 0) throw std::invalid_argument("qmatmul: N=" + s(N) + ", K=" + s(K));
    if (K % info.block_size != 0)
        throw std::invalid_argument("qmatmul: K=" + s(K) + " is not a multiple of " +
                                    s(info.block_size) + " for " + info.name);
    const DevTensor w = dev_tensor(w_obj, "w");
    expect_contiguous(w, "w");
    const int64_t need = N * (K / info.block_size) * info.type_size;
    const int64_t have = w.numel() * dtype_size(w.dtype);
    if (have != need)
        throw std::invalid_argument("w: " + s(have) + " bytes, but " + info.name + " of shape (" +
                                    s(N) + ", " + s(K) + ") needs " + s(need));
    const DevTensor x = dev_tensor(x_obj, "x");
    expect_dtype(x, "x", {DType::F32, DType::F16, DType::BF16});
    expect_contiguous(x, "x");
    if (x.shape.size() != 1 && x.shape.size() != 2)
        throw std::invalid_argument("x: expected 1 or 2 dims, got shape " + x.shape_str());
    if (x.shape.back() != K)
        throw std::invalid_argument("x: shape " + x.shape_str() + ", last dimension must be K=" +
                                    s(K));
    const int64_t M = x.shape.size() == 2 ? x.shape[0] : 1;
    if (y_obj.is_none())
        throw std::invalid_argument("y: required here (pylm.ops.qmatmul allocates it for you)");
    const DevTensor y = dev_tensor(y_obj, "y");
    expect_dtype(y, "y", {DType::F32});
    expect_contiguous(y, "y");
    if (y.readonly) throw std::invalid_argument("y: read-only array");
    if (y.numel() != M * N || y.shape.empty() || y.shape.back() != N)
        throw std::invalid_argument("y: shape " + y.shape_str() + ", expected (" + s(M) + ", " +
                                    s(N) + ")");
    const bool dense = info.type == QType::F32 || info.type == QType::F16 ||
                       info.type == QType::BF16;
    if (!dense && (reinterpret_cast<uintptr_t>(w.ptr) & 15))
        throw std::invalid_argument("w: device pointer must be 16-byte aligned for " +
                                    std::string(info.name));
    if (!dense && (reinterpret_cast<uintptr_t>(x.ptr) & 15))
        throw std::invalid_argument("x: device pointer must be 16-byte aligned");
    if (M == 0 || N == 0) return py::reinterpret_borrow<py::object>(y_obj);
    select_device_of(y.ptr, "y");
    {
        py::gil_scoped_release nogil;
        qmatmul(static_cast<int>(info.type), w.ptr, N, K, x.dtype, x.ptr, M,
                static_cast<float*>(y.ptr), accumulate, as_stream(stream));
    }
    return py::reinterpret_borrow<py::object>(y_obj);
}

}  // namespace

void bind_gemm(py::module_& m) {
    m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("c") = py::none(),
          py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0f,
          py::arg("beta") = 0.0f, py::arg("stream") = 0,
          "c = alpha * op(a) @ op(b) + beta * c on the GPU (fp32 accumulation); returns c.");
    m.def("qmatmul", &qmatmul_py, py::arg("w"), py::arg("qtype"), py::arg("N"), py::arg("K"),
          py::arg("x"), py::arg("y") = py::none(), py::arg("accumulate") = false,
          py::arg("stream") = 0,
          "y (+)= x @ dequant(w).T for GGUF weight bytes w of shape (N, K); returns y.");
    m.def("qmatmul_supported", [](py::handle q) {
        try {
            qtype_of(q);
            return true;
        } catch (const std::invalid_argument&) {
            return false;
        }
    }, py::arg("qtype"));
}

}  // namespace cuda
}  // namespace pylm
