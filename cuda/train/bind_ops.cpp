// Python bindings of the individual CUDA training ops (train_ops.cuh) on float32 device arrays
// (__cuda_array_interface__), named train_<op> in pylm._cuda. They exist so that each op can be
// checked against its CPU twin in pylm._core.train; the training step itself runs through
// TrainModel (bind_train.cpp). Shapes are validated here (ValueError naming the array).
#include <pybind11/pybind11.h>

#include <string>

#include "interop.h"
#include "train/model.h"
#include "train/train_ops.cuh"

namespace py = pybind11;

namespace pylm {
namespace cuda {

namespace {

std::string S(int64_t v) { return std::to_string(v); }

DevTensor f32(py::handle obj, const char* name, int ndim) {
    DevTensor t = dev_tensor(obj, name);
    expect_dtype(t, name, {DType::F32});
    expect_ndim(t, name, ndim);
    expect_contiguous(t, name);
    return t;
}

void same_shape(const DevTensor& a, const char* an, const DevTensor& b, const char* bn) {
    if (a.shape != b.shape)
        throw std::invalid_argument(std::string(bn) + ": shape " + b.shape_str() + " != " + an +
                                    " shape " + a.shape_str());
}

void expect_len(const DevTensor& t, const char* name, int64_t n) {
    if (t.numel() != n)
        throw std::invalid_argument(std::string(name) + ": expected " + S(n) + " elements, got shape " +
                                    t.shape_str());
}

float* fp(const DevTensor& t) { return static_cast<float*>(t.ptr); }

}  // namespace

void bind_train_ops(py::module_& m) {
    m.def("train_rmsnorm_fwd", [](py::handle x, py::handle w, py::handle y, py::handle rstd,
                                  float eps, uintptr_t stream) {
        require_device(0);
        DevTensor X = f32(x, "x", 2), W = f32(w, "weight", 1), Y = f32(y, "y", 2), R = f32(rstd, "rstd", 1);
        same_shape(X, "x", Y, "y");
        expect_len(W, "weight", X.shape[1]);
        expect_len(R, "rstd", X.shape[0]);
        py::gil_scoped_release nogil;
        train::rmsnorm_fwd(DType::F32, fp(X), fp(W), Y.ptr, fp(R), X.shape[0], X.shape[1], eps,
                           as_stream(stream));
    }, py::arg("x"), py::arg("weight"), py::arg("y"), py::arg("rstd"), py::arg("eps"),
       py::arg("stream") = 0);

    m.def("train_rmsnorm_bwd", [](py::handle x, py::handle w, py::handle rstd, py::handle dy,
                                  py::handle dx, py::object dw, bool accumulate, uintptr_t stream) {
        require_device(0);
        DevTensor X = f32(x, "x", 2), W = f32(w, "weight", 1), R = f32(rstd, "rstd", 1);
        DevTensor DY = f32(dy, "dy", 2), DX = f32(dx, "dx", 2);
        same_shape(X, "x", DY, "dy");
        same_shape(X, "x", DX, "dx");
        expect_len(W, "weight", X.shape[1]);
        expect_len(R, "rstd", X.shape[0]);
        float* dwp = nullptr;
        if (!dw.is_none()) {
            DevTensor DW = f32(dw, "dweight", 1);
            expect_len(DW, "dweight", X.shape[1]);
            dwp = fp(DW);
        }
        train::DevBuf ws(train::rmsnorm_bwd_workspace(X.shape[0], X.shape[1]));
        py::gil_scoped_release nogil;
        train::rmsnorm_bwd(DType::F32, fp(X), fp(W), fp(R), fp(DY), fp(DX), accumulate, nullptr,
                           dwp, X.shape[0], X.shape[1], ws.get(), as_stream(stream));
        PYLM_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));  // before ws is freed
    }, py::arg("x"), py::arg("weight"), py::arg("rstd"), py::arg("dy"), py::arg("dx"),
       py::arg("dweight"), py::arg("accumulate") = true, py::arg("stream") = 0);

    m.def("train_rope", [](py::handle x, int64_t T, int n_heads, int head_dim, py::handle cos,
                           py::handle sin, bool inverse, uintptr_t stream) {
        require_device(0);
        DevTensor X = f32(x, "x", 2), Cs = f32(cos, "cos", 2), Sn = f32(sin, "sin", 2);
        if (head_dim < 2 || head_dim % 2 || n_heads < 1 ||
            static_cast<int64_t>(n_heads) * head_dim > X.shape[1])
            throw std::invalid_argument("rope: n_heads=" + S(n_heads) + " x head_dim=" + S(head_dim) +
                                        " does not fit rows of " + S(X.shape[1]));
        if (T < 1 || X.shape[0] % T)
            throw std::invalid_argument("rope: T=" + S(T) + " does not divide rows " + S(X.shape[0]));
        expect_len(Cs, "cos", T * head_dim / 2);
        expect_len(Sn, "sin", T * head_dim / 2);
        py::gil_scoped_release nogil;
        train::rope(DType::F32, X.ptr, X.shape[1], X.shape[0], T, n_heads, head_dim, fp(Cs), fp(Sn),
                    inverse, as_stream(stream));
    }, py::arg("x"), py::arg("T"), py::arg("n_heads"), py::arg("head_dim"), py::arg("cos"),
       py::arg("sin"), py::arg("inverse") = false, py::arg("stream") = 0);

    m.def("train_swiglu_fwd", [](py::handle gu, py::handle h, uintptr_t stream) {
        require_device(0);
        DevTensor G = f32(gu, "gate_up", 2), Hh = f32(h, "h", 2);
        if (G.shape[1] % 2 || Hh.shape[0] != G.shape[0] || Hh.shape[1] * 2 != G.shape[1])
            throw std::invalid_argument("swiglu_fwd: gate_up " + G.shape_str() + " vs h " + Hh.shape_str());
        py::gil_scoped_release nogil;
        train::swiglu_fwd(DType::F32, G.ptr, Hh.ptr, G.shape[0], Hh.shape[1], as_stream(stream));
    }, py::arg("gate_up"), py::arg("h"), py::arg("stream") = 0);

    m.def("train_swiglu_bwd", [](py::handle gu, py::handle dh, py::handle dgu, uintptr_t stream) {
        require_device(0);
        DevTensor G = f32(gu, "gate_up", 2), DH = f32(dh, "dh", 2), DG = f32(dgu, "dgate_up", 2);
        same_shape(G, "gate_up", DG, "dgate_up");
        if (G.shape[1] % 2 || DH.shape[0] != G.shape[0] || DH.shape[1] * 2 != G.shape[1])
            throw std::invalid_argument("swiglu_bwd: gate_up " + G.shape_str() + " vs dh " + DH.shape_str());
        py::gil_scoped_release nogil;
        train::swiglu_bwd(DType::F32, G.ptr, fp(DH), DG.ptr, G.shape[0], DH.shape[1], as_stream(stream));
    }, py::arg("gate_up"), py::arg("dh"), py::arg("dgate_up"), py::arg("stream") = 0);

    m.def("train_embedding_bwd", [](py::handle ids, py::handle dout, py::handle dw, uintptr_t stream) {
        require_device(0);
        DevTensor I = dev_tensor(ids, "ids");
        expect_dtype(I, "ids", {DType::I32});
        expect_contiguous(I, "ids");
        DevTensor DO = f32(dout, "dout", 2), DW = f32(dw, "dweight", 2);
        expect_len(I, "ids", DO.shape[0]);
        if (DW.shape[1] != DO.shape[1])
            throw std::invalid_argument("dweight: " + DW.shape_str() + " vs dout " + DO.shape_str());
        // NOTE: ids are device data; their range is the caller's contract (TrainModel checks).
        py::gil_scoped_release nogil;
        train::embedding_bwd(static_cast<const int32_t*>(I.ptr), fp(DO), fp(DW), DO.shape[0],
                             DO.shape[1], as_stream(stream));
    }, py::arg("ids"), py::arg("dout"), py::arg("dweight"), py::arg("stream") = 0);

    m.def("train_softmax_xent", [](py::handle z, py::handle t, py::handle loss, float grad_scale,
                                   bool grad, uintptr_t stream) {
        require_device(0);
        DevTensor Z = f32(z, "logits", 2), L = f32(loss, "losses", 1);
        DevTensor Tg = dev_tensor(t, "targets");
        expect_dtype(Tg, "targets", {DType::I32});
        expect_contiguous(Tg, "targets");
        expect_len(Tg, "targets", Z.shape[0]);
        expect_len(L, "losses", Z.shape[0]);
        py::gil_scoped_release nogil;
        train::softmax_xent(DType::F32, Z.ptr, static_cast<const int32_t*>(Tg.ptr), fp(L),
                            Z.shape[0], Z.shape[1], grad_scale, grad, as_stream(stream));
    }, py::arg("logits"), py::arg("targets"), py::arg("losses"), py::arg("grad_scale"),
       py::arg("grad") = true, py::arg("stream") = 0);

    m.def("train_attention_bwd", [](py::handle qkv, py::handle out, py::handle lse, py::handle dout,
                                    py::handle dqkv, int B, int T, int H, int Hkv, float scale,
                                    uintptr_t stream) {
        require_device(0);
        DevTensor Q = f32(qkv, "qkv", 2), O = f32(out, "out", 2), LS = f32(lse, "lse", 3);
        DevTensor DO = f32(dout, "dout", 2), DQ = f32(dqkv, "dqkv", 2);
        if (B < 1 || T < 1 || H < 1 || Hkv < 1 || H % Hkv)
            throw std::invalid_argument("attention_bwd: B=" + S(B) + " T=" + S(T) + " H=" + S(H) +
                                        " Hkv=" + S(Hkv));
        if (Q.shape[0] != int64_t(B) * T || Q.shape[1] % (H + 2 * Hkv))
            throw std::invalid_argument("qkv: shape " + Q.shape_str() + " does not match B*T=" +
                                        S(int64_t(B) * T) + " and H + 2 Hkv=" + S(H + 2 * Hkv));
        const int D = static_cast<int>(Q.shape[1] / (H + 2 * Hkv));
        same_shape(Q, "qkv", DQ, "dqkv");
        same_shape(O, "out", DO, "dout");
        if (O.shape[0] != Q.shape[0] || O.shape[1] != int64_t(H) * D)
            throw std::invalid_argument("out: shape " + O.shape_str() + ", expected (" +
                                        S(Q.shape[0]) + ", " + S(int64_t(H) * D) + ")");
        expect_len(LS, "lse", int64_t(B) * H * T);
        train::AttnBwdParams p;
        p.dt = DType::F32;
        p.q = fp(Q), p.k = fp(Q) + H * D, p.v = fp(Q) + (H + Hkv) * D;
        p.o = fp(O), p.dout = fp(DO), p.lse = fp(LS);
        p.dq = fp(DQ), p.dk = fp(DQ) + H * D, p.dv = fp(DQ) + (H + Hkv) * D;
        p.B = B, p.T = T, p.H = H, p.Hkv = Hkv, p.D = D, p.ld = Q.shape[1], p.ldo = O.shape[1];
        p.scale = scale;
        train::DevBuf ws(train::attention_bwd_workspace(p));
        py::gil_scoped_release nogil;
        train::attention_bwd(p, ws.get(), as_stream(stream));
        PYLM_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));  // before ws is freed
    }, py::arg("qkv"), py::arg("out"), py::arg("lse"), py::arg("dout"), py::arg("dqkv"),
       py::arg("B"), py::arg("T"), py::arg("n_heads"), py::arg("n_kv_heads"), py::arg("scale"),
       py::arg("stream") = 0);

    m.def("train_adamw", [](py::handle p, py::handle g, py::handle mm, py::handle vv, float lr,
                            float beta1, float beta2, float eps, float weight_decay, int64_t step,
                            float grad_scale, uintptr_t stream) {
        require_device(0);
        DevTensor P = f32(p, "param", 1), G = f32(g, "grad", 1), M = f32(mm, "m", 1), V = f32(vv, "v", 1);
        same_shape(P, "param", G, "grad");
        same_shape(P, "param", M, "m");
        same_shape(P, "param", V, "v");
        if (step < 1) throw std::invalid_argument("adamw: step=" + S(step) + " must be >= 1");
        train::AdamWArgs a{lr, beta1, beta2, eps, weight_decay, step, grad_scale};
        py::gil_scoped_release nogil;
        train::adamw(fp(P), fp(G), fp(M), fp(V), nullptr, P.numel(), a, as_stream(stream));
    }, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("lr"),
       py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
       py::arg("grad_scale") = 1.0f, py::arg("stream") = 0);
}

}  // namespace cuda
}  // namespace pylm
