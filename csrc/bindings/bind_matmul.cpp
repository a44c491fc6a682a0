// Python binding of the f32 matmul: validation (shapes, dtypes, strides) happens here once.
//
// Arrays may be any 2-D float32 view whose rows or columns are contiguous: a C-ordered slice
// maps to a leading dimension, and an F-ordered view (x.T) maps to the kernel's transpose flag,
// so `matmul(x.T, w)` runs without a copy. Other layouts are copied.
#include <string>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "kernels/matmul.h"

namespace pylm {

namespace {

// A 2-D float32 array seen as a row-major matrix with row stride `ld` (trans = false), or as
// the transpose of one (trans = true: element (r, c) at p[c * ld + r]).
struct MatView {
    py::array keep;  // owns the data (a copy when the input layout was unusable)
    float* p = nullptr;
    int64_t rows = 0, cols = 0, ld = 0;
    bool trans = false;
};

py::array check_f32(const py::handle& obj, const char* what) {
    py::array arr = py::array::ensure(obj);
    if (!arr)
        throw std::invalid_argument(std::string("matmul: ") + what + " must be a numpy array");
    if (!arr.dtype().is(py::dtype::of<float>()))
        throw std::invalid_argument(std::string("matmul: ") + what +
                                    " must have dtype float32, got " +
                                    std::string(py::str(arr.dtype())));
    return arr;
}

MatView view2d(py::array arr) {
    MatView v;
    v.rows = arr.shape(0);
    v.cols = arr.shape(1);
    const int64_t s0 = arr.strides(0), s1 = arr.strides(1), fs = sizeof(float);
    const bool aligned = s0 % fs == 0 && s1 % fs == 0;
    if (aligned && (s1 == fs || v.cols <= 1) && s0 >= fs * v.cols) {
        v.ld = v.rows <= 1 ? (v.cols > 0 ? v.cols : 1) : s0 / fs;
    } else if (aligned && (s0 == fs || v.rows <= 1) && s1 >= fs * v.rows) {
        v.trans = true;
        v.ld = v.cols <= 1 ? (v.rows > 0 ? v.rows : 1) : s1 / fs;
    } else {
        arr = py::array_t<float, py::array::c_style | py::array::forcecast>(arr);
        v.ld = v.cols > 0 ? v.cols : 1;
    }
    if (v.ld < 1) v.ld = 1;
    v.keep = arr;
    v.p = static_cast<float*>(arr.mutable_data());
    return v;
}

py::array matmul_py(const py::handle& a_obj, const py::handle& b_obj, bool transpose_b,
                    bool transpose_a, int threads, const py::object& out_obj, bool accumulate) {
    py::array a = check_f32(a_obj, "a"), b = check_f32(b_obj, "b");
    const bool a_vec = a.ndim() == 1;
    if (a.ndim() != 1 && a.ndim() != 2)
        throw std::invalid_argument("matmul: a must be 1-D or 2-D, got shape " + shape_str(a));
    if (b.ndim() != 2)
        throw std::invalid_argument("matmul: b must be 2-D, got shape " + shape_str(b));
    const std::string a_shape = shape_str(a);
    if (a_vec) {
        a = a.reshape({(py::ssize_t)1, a.shape(0)});
        transpose_a = false;  // a 1-D a is a row vector either way
    }
    const MatView av = view2d(a), bv = view2d(b);
    const int64_t M = transpose_a ? av.cols : av.rows, K = transpose_a ? av.rows : av.cols;
    const int64_t Kb = transpose_b ? bv.cols : bv.rows, N = transpose_b ? bv.rows : bv.cols;
    if (K != Kb)
        throw std::invalid_argument("matmul: shapes a" + a_shape + (transpose_a ? ".T" : "") +
                                    " and b" + shape_str(b) + (transpose_b ? ".T" : "") +
                                    " do not align: K=" + std::to_string(K) + " vs " +
                                    std::to_string(Kb));
    const int nthreads = resolve_threads(threads);

    py::array out;
    std::vector<py::ssize_t> out_shape =
        a_vec ? std::vector<py::ssize_t>{(py::ssize_t)N}
              : std::vector<py::ssize_t>{(py::ssize_t)M, (py::ssize_t)N};
    if (out_obj.is_none()) {
        if (accumulate) throw std::invalid_argument("matmul: accumulate=True needs out=");
        out = py::array_t<float>(out_shape);
    } else {
        out = check_f32(out_obj, "out");
        if (out.ndim() != (py::ssize_t)out_shape.size() || out.shape(0) != out_shape[0] ||
            (!a_vec && out.shape(1) != out_shape[1]))
            throw std::invalid_argument("matmul: out has shape " + shape_str(out) + ", expected (" +
                                        std::to_string(M) + ", " + std::to_string(N) + ")");
        if (!out.writeable()) throw std::invalid_argument("matmul: out is read-only");
        py::object may_share = py::module_::import("numpy").attr("may_share_memory");
        if (may_share(out, a).cast<bool>() || may_share(out, b).cast<bool>())
            throw std::invalid_argument("matmul: out overlaps an input");
    }
    if (M == 0 || N == 0) return out;
    py::array out2 = a_vec ? out.reshape({(py::ssize_t)1, (py::ssize_t)N}) : out;
    const int64_t fs = sizeof(float);
    if (N > 1 && out2.strides(1) != fs)
        throw std::invalid_argument("matmul: out must have contiguous rows");
    if (M > 1 && (out2.strides(0) % fs != 0 || out2.strides(0) < fs * N))
        throw std::invalid_argument("matmul: out rows overlap or are misaligned");

    GemmArgs g;
    g.A = av.p;
    g.B = bv.p;
    g.C = static_cast<float*>(out2.mutable_data());
    g.M = M;
    g.N = N;
    g.K = K;
    g.lda = av.ld;
    g.ldb = bv.ld;
    g.ldc = M > 1 ? out2.strides(0) / fs : (N > 0 ? N : 1);
    g.trans_a = av.trans != transpose_a;
    g.trans_b = bv.trans != transpose_b;
    g.beta = accumulate ? 1.0f : 0.0f;
    {
        py::gil_scoped_release nogil;
        gemm_f32(g, nthreads);
    }
    return out;
}

}  // namespace

void bind_matmul(py::module_& m) {
    m.def("matmul", &matmul_py, py::arg("a"), py::arg("b"), py::arg("transpose_b") = false,
          py::arg("transpose_a") = false, py::arg("threads") = 0, py::arg("out") = py::none(),
          py::arg("accumulate") = false,
          "f32 matmul: op(a) @ op(b) (+ out when accumulate). a: (M, K) or (K,), b: (K, N) or "
          "(N, K) with transpose_b.");
}

}  // namespace pylm
