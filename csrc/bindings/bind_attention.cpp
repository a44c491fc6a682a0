// Python binding of the fused attention: every shape / option check happens here.
//
// q (T, Hq, D), k / v (S, Hkv, D) float32 with a contiguous last axis; the token and head
// strides are passed through, so K/V may be slices of a larger cache. Other layouts are copied.
#include <cmath>
#include <string>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "kernels/attention.h"

namespace pylm {

namespace {

py::array check3d(const py::handle& obj, const char* what, const char* dims) {
    py::array arr = py::array::ensure(obj);
    if (!arr)
        throw std::invalid_argument(std::string("attention: ") + what + " must be a numpy array");
    if (!arr.dtype().is(py::dtype::of<float>()))
        throw std::invalid_argument(std::string("attention: ") + what +
                                    " must have dtype float32, got " +
                                    std::string(py::str(arr.dtype())));
    if (arr.ndim() != 3)
        throw std::invalid_argument(std::string("attention: ") + what + " must be 3-D " + dims +
                                    ", got shape " + shape_str(arr));
    const py::ssize_t fs = sizeof(float);
    bool ok = arr.strides(2) == fs || arr.shape(2) <= 1;
    for (int i = 0; i < 2; ++i) ok = ok && arr.strides(i) >= 0 && arr.strides(i) % fs == 0;
    if (!ok) arr = py::array_t<float, py::array::c_style | py::array::forcecast>(arr);
    return arr;
}

py::array attention_py(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj,
                       const py::object& scale_obj, bool causal, int64_t window,
                       const py::object& q_pos0_obj, float softcap, int threads) {
    py::array q = check3d(q_obj, "q", "(T, Hq, D)"), k = check3d(k_obj, "k", "(S, Hkv, D)"),
              v = check3d(v_obj, "v", "(S, Hkv, D)");
    const std::string shapes = " (q.shape=" + shape_str(q) + ", k.shape=" + shape_str(k) +
                               ", v.shape=" + shape_str(v) + ")";
    if (k.shape(0) != v.shape(0) || k.shape(1) != v.shape(1) || k.shape(2) != v.shape(2))
        throw std::invalid_argument("attention: k and v shapes differ" + shapes);
    const int64_t T = q.shape(0), S = k.shape(0);
    const int64_t Hq = q.shape(1), Hkv = k.shape(1), D = q.shape(2);
    if (k.shape(2) != D)
        throw std::invalid_argument("attention: head dim differs: q has D=" + std::to_string(D) +
                                    ", k has D=" + std::to_string(k.shape(2)) + shapes);
    if (D < 1 || Hq < 1 || Hkv < 1)
        throw std::invalid_argument("attention: D, Hq and Hkv must be >= 1" + shapes);
    if (Hq % Hkv != 0)
        throw std::invalid_argument("attention: Hq=" + std::to_string(Hq) +
                                    " is not a multiple of Hkv=" + std::to_string(Hkv) + shapes);
    if (window < 0)
        throw std::invalid_argument("attention: window must be >= 0, got " +
                                    std::to_string(window));
    if (window > 0 && !causal)
        throw std::invalid_argument("attention: window=" + std::to_string(window) +
                                    " needs causal=True");
    if (!(softcap >= 0.0f) || std::isinf(softcap))
        throw std::invalid_argument("attention: softcap must be finite and >= 0, got " +
                                    std::to_string(softcap));
    float scale = 1.0f / std::sqrt(static_cast<float>(D));
    if (!scale_obj.is_none()) scale = scale_obj.cast<float>();
    if (!std::isfinite(scale))
        throw std::invalid_argument("attention: scale must be finite, got " +
                                    std::to_string(scale));
    int64_t q_pos0 = 0;
    if (!q_pos0_obj.is_none()) {
        q_pos0 = q_pos0_obj.cast<int64_t>();
        if (q_pos0 < 0)
            throw std::invalid_argument("attention: q_pos0 must be >= 0, got " +
                                        std::to_string(q_pos0));
    } else if (causal) {
        if (T > S)
            throw std::invalid_argument("attention: T=" + std::to_string(T) +
                                        " queries but only S=" + std::to_string(S) +
                                        " keys; pass q_pos0 to place the queries" + shapes);
        q_pos0 = S - T;
    }
    const int nthreads = resolve_threads(threads);

    py::array_t<float> out({T, Hq, D});
    AttnArgs a;
    a.q = static_cast<const float*>(q.data());
    a.k = static_cast<const float*>(k.data());
    a.v = static_cast<const float*>(v.data());
    a.out = out.mutable_data();
    const int64_t fs = sizeof(float);
    a.q_st = q.strides(0) / fs;
    a.q_sh = q.strides(1) / fs;
    a.k_st = k.strides(0) / fs;
    a.k_sh = k.strides(1) / fs;
    a.v_st = v.strides(0) / fs;
    a.v_sh = v.strides(1) / fs;
    a.o_st = Hq * D;
    a.o_sh = D;
    a.T = T;
    a.S = S;
    a.Hq = static_cast<int>(Hq);
    a.Hkv = static_cast<int>(Hkv);
    a.D = static_cast<int>(D);
    a.scale = scale;
    a.softcap = softcap;
    a.q_pos0 = q_pos0;
    a.window = window;
    a.causal = causal;
    {
        py::gil_scoped_release nogil;
        attention(a, nthreads);
    }
    return out;
}

}  // namespace

void bind_attention(py::module_& m) {
    m.def("attention", &attention_py, py::arg("q"), py::arg("k"), py::arg("v"),
          py::arg("scale") = py::none(), py::arg("causal") = true, py::arg("window") = 0,
          py::arg("q_pos0") = py::none(), py::arg("softcap") = 0.0f, py::arg("threads") = 0,
          "Fused (flash-style) attention for one sequence: q (T, Hq, D), k/v (S, Hkv, D).");
}

}  // namespace pylm
