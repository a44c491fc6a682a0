// Python bindings for the row kernels (kernels/nn.h) and activations (kernels/act.h).
// Every argument is checked here, with messages naming the value; the kernels then run with
// the GIL released. Python-facing wrappers with docstrings: pylm/ops/nn.py.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "kernels/act.h"
#include "kernels/nn.h"

namespace pylm {

namespace {

using F32 = py::array_t<float, py::array::c_style>;
using UnaryFn = void (*)(const float*, float*, int64_t, int);
using GatedFn = void (*)(const float*, const float*, float*, int64_t, int);

F32 empty_like(const py::array& a) {
    return F32(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

bool same_shape(const py::array& a, const py::array& b) {
    if (a.ndim() != b.ndim()) return false;
    for (py::ssize_t i = 0; i < a.ndim(); ++i)
        if (a.shape(i) != b.shape(i)) return false;
    return true;
}

void check_at_least_1d(const py::array& a, const std::string& what) {
    if (a.ndim() < 1)
        throw std::invalid_argument(what + ": expected at least 1 dimension, got shape " +
                                    shape_str(a));
}

void check_positive_finite(float v, const std::string& what) {
    if (!(std::isfinite(v) && v > 0.0f))
        throw std::invalid_argument(what + " must be finite and > 0, got " + std::to_string(v));
}

// x: [..., C] -> y: [..., C], y == x when out is x.
py::array rmsnorm(py::handle x_obj, py::handle w_obj, float eps, int threads, py::handle out_obj) {
    F32 x = as_f32(x_obj, "rmsnorm: x");
    check_at_least_1d(x, "rmsnorm: x");
    const int64_t C = x.shape(x.ndim() - 1);
    const int64_t R = C > 0 ? x.size() / C : 0;
    F32 w;
    if (!w_obj.is_none()) {
        w = as_f32(w_obj, "rmsnorm: weight");
        check_ndim(w, 1, "rmsnorm: weight");
        if (w.shape(0) != C)
            throw std::invalid_argument("rmsnorm: x.shape[-1]=" + std::to_string(C) +
                                        " but weight.shape[0]=" + std::to_string(w.shape(0)));
    }
    if (!(std::isfinite(eps) && eps >= 0.0f))
        throw std::invalid_argument("rmsnorm: eps must be finite and >= 0, got " +
                                    std::to_string(eps));
    F32 y = out_obj.is_none() ? empty_like(x) : as_f32(out_obj, "rmsnorm: out");
    if (!same_shape(x, y))
        throw std::invalid_argument("rmsnorm: out.shape=" + shape_str(y) +
                                    " but x.shape=" + shape_str(x));
    const int nt = resolve_threads(threads);
    const float* wp = w_obj.is_none() ? nullptr : w.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        rmsnorm_f32(x.data(), wp, yp, R, C, eps, nt);
    }
    return std::move(y);
}

// x: [T, H, D]; positions: [T] int32.
py::array rope(py::handle x_obj, py::handle pos_obj, float base, int mode, int n_dims,
               float freq_scale, bool inplace, int threads) {
    F32 x = as_f32(x_obj, "rope: x");
    check_ndim(x, 3, "rope: x (T, H, D)");
    py::array pos = py::array::ensure(pos_obj);
    if (!pos || !pos.dtype().is(py::dtype::of<int32_t>()))
        throw std::invalid_argument("rope: positions must be an int32 array");
    if (pos.ndim() != 1 || pos.shape(0) != x.shape(0))
        throw std::invalid_argument("rope: positions.shape=" + shape_str(pos) +
                                    " but x.shape[0]=" + std::to_string(x.shape(0)));
    const auto pos32 = py::array_t<int32_t, py::array::c_style>(pos);
    if (x.shape(1) > std::numeric_limits<int>::max() ||
        x.shape(2) > std::numeric_limits<int>::max())
        throw std::invalid_argument("rope: x.shape=" + shape_str(x) + " is too large");
    const int64_t T = x.shape(0);
    const int H = static_cast<int>(x.shape(1)), D = static_cast<int>(x.shape(2));
    if (n_dims < 0) n_dims = D;
    if (n_dims == 0 || n_dims % 2 != 0 || n_dims > D)
        throw std::invalid_argument("rope: n_dims=" + std::to_string(n_dims) +
                                    " must be even and in [2, head dim " + std::to_string(D) + "]");
    if (mode != kRopeNormal && mode != kRopeNeox)
        throw std::invalid_argument("rope: mode=" + std::to_string(mode) +
                                    " (expected 0 = normal or 2 = neox)");
    check_positive_finite(base, "rope: base");
    check_positive_finite(freq_scale, "rope: freq_scale");
    F32 y = x;
    if (!inplace) {
        y = empty_like(x);
        std::memcpy(y.mutable_data(), x.data(), static_cast<size_t>(x.nbytes()));
    }
    const int nt = resolve_threads(threads);
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        rope_f32(yp, pos32.data(), T, H, D, n_dims, base, freq_scale, mode, nt);
    }
    return std::move(y);
}

// x: [..., C] -> softmax over the last axis.
py::array softmax(py::handle x_obj, float scale, int threads) {
    F32 x = as_f32(x_obj, "softmax: x");
    check_at_least_1d(x, "softmax: x");
    if (!std::isfinite(scale))
        throw std::invalid_argument("softmax: scale must be finite, got " + std::to_string(scale));
    const int64_t C = x.shape(x.ndim() - 1);
    const int64_t R = C > 0 ? x.size() / C : 0;
    F32 y = empty_like(x);
    const int nt = resolve_threads(threads);
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        softmax_f32(x.data(), yp, R, C, scale, nt);
    }
    return std::move(y);
}

py::array unary(UnaryFn fn, const char* name, py::handle x_obj, int threads) {
    F32 x = as_f32(x_obj, (std::string(name) + ": x").c_str());
    F32 y = empty_like(x);
    const int nt = resolve_threads(threads);
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        fn(x.data(), yp, x.size(), nt);
    }
    return std::move(y);
}

py::array gated(GatedFn fn, const char* name, py::handle gate_obj, py::handle up_obj, int threads) {
    F32 gate = as_f32(gate_obj, (std::string(name) + ": gate").c_str());
    F32 up = as_f32(up_obj, (std::string(name) + ": up").c_str());
    if (!same_shape(gate, up))
        throw std::invalid_argument(std::string(name) + ": gate.shape=" + shape_str(gate) +
                                    " but up.shape=" + shape_str(up));
    F32 y = empty_like(gate);
    const int nt = resolve_threads(threads);
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        fn(gate.data(), up.data(), yp, gate.size(), nt);
    }
    return std::move(y);
}

}  // namespace

void bind_nn(py::module_& m) {
    m.def("rmsnorm", &rmsnorm, py::arg("x"), py::arg("weight") = py::none(), py::arg("eps") = 1e-6f,
          py::arg("threads") = 0, py::arg("out") = py::none(),
          "RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight.");
    m.def("rope", &rope, py::arg("x"), py::arg("positions"), py::arg("base") = 10000.0f,
          py::arg("mode") = 0, py::arg("n_dims") = -1, py::arg("freq_scale") = 1.0f,
          py::arg("inplace") = false, py::arg("threads") = 0,
          "Rotary embedding of x (T, H, D); mode 0 = normal (adjacent pairs), 2 = neox.");
    m.def("softmax", &softmax, py::arg("x"), py::arg("scale") = 1.0f, py::arg("threads") = 0,
          "softmax(scale * x) over the last axis.");
    const struct {
        const char* name;
        UnaryFn fn;
    } unaries[] = {{"exp", &exp_f32},
                   {"tanh", &tanh_f32},
                   {"silu", &silu_f32},
                   {"gelu", &gelu_f32},
                   {"gelu_erf", &gelu_erf_f32}};
    for (const auto& u : unaries) {
        UnaryFn fn = u.fn;
        const char* name = u.name;
        m.def(
            name, [fn, name](py::handle x, int threads) { return unary(fn, name, x, threads); },
            py::arg("x"), py::arg("threads") = 0);
    }
    const struct {
        const char* name;
        GatedFn fn;
    } gateds[] = {{"swiglu", &swiglu_f32}, {"geglu", &geglu_f32}};
    for (const auto& g : gateds) {
        GatedFn fn = g.fn;
        const char* name = g.name;
        m.def(
            name,
            [fn, name](py::handle gate, py::handle up, int threads) {
                return gated(fn, name, gate, up, threads);
            },
            py::arg("gate"), py::arg("up"), py::arg("threads") = 0);
    }
}

}  // namespace pylm
