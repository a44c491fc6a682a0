// Python bindings of the CUDA train area (see bind.h): the whole training step as one object
// (TrainModel: device-resident parameters, gradients, AdamW moments and activations; host
// numpy arrays in and out) and the individual training ops on device arrays
// (__cuda_array_interface__: torch / cupy) for tests. Validation happens here; every entry
// checks for a usable device first (RuntimeError, never a CPU fallback).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bind.h"
#include "interop.h"
#include "train/model.h"
#include "train/train_ops.cuh"

namespace py = pybind11;

namespace pylm {
namespace cuda {

namespace {

using train::TrainModel;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::string S(int64_t v) { return std::to_string(v); }

DType parse_dtype(const std::string& s) {
    if (s == "float32" || s == "fp32" || s == "f32") return DType::F32;
    if (s == "bfloat16" || s == "bf16") return DType::BF16;
    throw std::invalid_argument("dtype: expected 'float32' or 'bfloat16', got '" + s + "'");
}

// ---- TrainModel ----

std::unique_ptr<TrainModel> make_model(int64_t vocab, int64_t d_model, int64_t n_layers,
                                       int64_t n_heads, int64_t n_kv_heads, int64_t ffn, float eps,
                                       float rope_base, bool tie, const std::string& dtype,
                                       int64_t n_params, std::map<std::string, int64_t> offsets,
                                       int device) {
    train::ModelShape s;
    s.V = vocab, s.C = d_model, s.L = n_layers, s.H = n_heads, s.Hkv = n_kv_heads, s.F = ffn;
    s.eps = eps, s.rope_base = rope_base, s.tie = tie;
    if (s.V < 1 || s.C < 1 || s.L < 1 || s.H < 1 || s.Hkv < 1 || s.F < 1)
        throw std::invalid_argument("TrainModel: sizes must be positive");
    if (s.C % s.H || s.H % s.Hkv)
        throw std::invalid_argument("TrainModel: d_model=" + S(s.C) + ", n_heads=" + S(s.H) +
                                    ", n_kv_heads=" + S(s.Hkv) + " do not divide");
    s.D = s.C / s.H;
    const DType dt = parse_dtype(dtype);
    for (const auto& kv : offsets)
        if (kv.second < 0 || kv.second >= n_params)
            throw std::invalid_argument("offsets: '" + kv.first + "' at " + S(kv.second) +
                                        " outside [0, " + S(n_params) + ")");
    require_device(device);
    return std::make_unique<TrainModel>(s, dt, n_params, offsets, device);
}

void check_flat(const py::array& a, int64_t n, const char* name) {
    if (a.ndim() != 1 || a.shape(0) != n)
        throw std::invalid_argument(std::string(name) + ": expected shape (" + S(n) + ",), got " +
                                    S(a.ndim()) + "-d of size " + S(a.size()));
}

double model_forward(TrainModel& m, py::object ids_obj, py::object tg_obj, bool grad,
                     int64_t vocab) {
    I32 ids = ids_obj.cast<I32>();
    if (ids.ndim() != 2)
        throw std::invalid_argument("ids: expected (B, T), got " + S(ids.ndim()) + " dims");
    const int64_t B = ids.shape(0), T = ids.shape(1);
    if (B < 1 || T < 1) throw std::invalid_argument("ids: empty batch (" + S(B) + ", " + S(T) + ")");
    const int32_t* ip = ids.data();
    for (int64_t i = 0; i < B * T; ++i)
        if (ip[i] < 0 || ip[i] >= vocab)
            throw std::out_of_range("ids: token " + S(ip[i]) + " outside [0, " + S(vocab) + ")");
    I32 tg;
    const int32_t* tp = nullptr;
    if (!tg_obj.is_none()) {
        tg = tg_obj.cast<I32>();
        if (tg.size() != B * T)
            throw std::invalid_argument("targets: expected " + S(B * T) + " values, got " +
                                        S(tg.size()));
        tp = tg.data();
        for (int64_t i = 0; i < B * T; ++i)
            if (tp[i] >= vocab)
                throw std::out_of_range("targets: token " + S(tp[i]) + " outside [0, " + S(vocab) + ")");
    }
    py::gil_scoped_release nogil;
    return m.forward(ip, tp, B, T, grad && tp != nullptr);
}

void bind_model(py::module_& m) {
    py::class_<TrainModel>(m, "TrainModel",
                           "Device-resident Llama training state (pylm.train.cuda_model wraps it).")
        .def(py::init(&make_model), py::arg("vocab"), py::arg("d_model"), py::arg("n_layers"),
             py::arg("n_heads"), py::arg("n_kv_heads"), py::arg("ffn"), py::arg("eps"),
             py::arg("rope_base"), py::arg("tie_embeddings"), py::arg("dtype"),
             py::arg("n_params"), py::arg("offsets"), py::arg("device") = 0)
        .def_property_readonly("n_params", &TrainModel::n_params)
        .def("set_params", [](TrainModel& t, F32 p) {
            check_flat(p, t.n_params(), "params");
            py::gil_scoped_release nogil;
            t.set_params(p.data());
        })
        .def("get_params", [](TrainModel& t) {
            py::array_t<float> out(t.n_params());
            t.get_params(out.mutable_data());
            return out;
        })
        .def("get_grads", [](TrainModel& t) {
            py::array_t<float> out(t.n_params());
            t.get_grads(out.mutable_data());
            return out;
        })
        .def("set_moments", [](TrainModel& t, F32 mm, F32 vv) {
            check_flat(mm, t.n_params(), "m");
            check_flat(vv, t.n_params(), "v");
            py::gil_scoped_release nogil;
            t.set_moments(mm.data(), vv.data());
        })
        .def("get_moments", [](TrainModel& t) {
            py::array_t<float> mm(t.n_params()), vv(t.n_params());
            t.get_moments(mm.mutable_data(), vv.mutable_data());
            return py::make_tuple(mm, vv);
        })
        .def("set_frozen", [](TrainModel& t, std::set<std::string> names) { t.set_frozen(names); })
        .def("forward", &model_forward, py::arg("ids"), py::arg("targets"), py::arg("grad"),
             py::arg("vocab"),
             "Mean cross-entropy over targets >= 0 (0.0 without targets); keeps the activations.")
        .def("logits", [](TrainModel& t, int64_t N, int64_t V) {
            py::array_t<float> out({N, V});
            t.logits(out.mutable_data());
            return out;
        })
        .def("backward", [](TrainModel& t) {
            py::gil_scoped_release nogil;
            t.backward();
        })
        .def("zero_grad", &TrainModel::zero_grad)
        .def("grad_sum_squares", [](TrainModel& t) {
            py::gil_scoped_release nogil;
            return t.grad_sum_squares();
        })
        .def("adamw", [](TrainModel& t, std::vector<std::tuple<int64_t, int64_t, float>> segs,
                         float lr, float b1, float b2, float eps, int64_t step, float grad_scale) {
            if (step < 1) throw std::invalid_argument("adamw: step=" + S(step) + " must be >= 1");
            std::vector<train::Segment> sg;
            for (auto& s : segs) sg.push_back({std::get<0>(s), std::get<1>(s), std::get<2>(s)});
            py::gil_scoped_release nogil;
            t.adamw(sg, lr, b1, b2, eps, step, grad_scale);
        }, py::arg("segments"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
           py::arg("step"), py::arg("grad_scale"))
        .def("synchronize", &TrainModel::synchronize);
}

}  // namespace

void bind_train_ops(py::module_& m);  // bind_train_ops.cpp

void bind_train(py::module_& m) {
    bind_model(m);
    bind_train_ops(m);
}

}  // namespace cuda
}  // namespace pylm
