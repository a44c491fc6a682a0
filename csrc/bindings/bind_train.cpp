// Python bindings for the training ops (csrc/train/): pylm._core.train.*
//
// Out-parameter style: the training loop preallocates every activation and gradient buffer and
// passes it in, so a step allocates nothing. Every shape, dtype and id is checked here with
// messages naming the value; the kernels then run with the GIL released. Python wrappers that
// allocate outputs, with docstrings: pylm/train/ops.py.
#include <cmath>
#include <cstring>
#include <string>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "train/attention.h"
#include "train/linear.h"
#include "train/optim.h"
#include "train/pointwise.h"
#include "train/rmsnorm.h"
#include "train/xent.h"

namespace pylm {

namespace {

using F32 = py::array_t<float, py::array::c_style>;
using I32 = py::array_t<int32_t, py::array::c_style>;
using std::to_string;

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

I32 as_i32(const py::handle& obj, const char* what) {
    py::array arr = py::array::ensure(obj);
    if (!arr) bad(std::string(what) + ": expected a numpy array");
    if (!arr.dtype().is(py::dtype::of<int32_t>()))
        bad(std::string(what) + ": expected dtype int32, got " + std::string(py::str(arr.dtype())));
    if (!(arr.flags() & py::array::c_style))
        bad(std::string(what) + ": array must be C-contiguous");
    return I32(arr);
}

// A C-contiguous float32 array that is written to: also rejects read-only arrays.
F32 as_out(const py::handle& obj, const char* what) {
    F32 a = as_f32(obj, what);
    if (!a.writeable()) bad(std::string(what) + ": array is read-only");
    return a;
}

void check_shape(const py::array& a, std::initializer_list<int64_t> shape, const char* what) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    int i = 0;
    for (int64_t s : shape) ok = ok && a.shape(i++) == s;
    if (!ok) {
        std::string want = "(";
        i = 0;
        for (int64_t s : shape) want += (i++ ? ", " : "") + to_string(s);
        bad(std::string(what) + ": expected shape " + want + (shape.size() == 1 ? ",)" : ")") +
            ", got " + shape_str(a));
    }
}

void check_ids(const I32& ids, int64_t V, const char* what) {
    const int32_t* p = ids.data();
    for (py::ssize_t i = 0; i < ids.size(); ++i)
        if (p[i] < 0 || p[i] >= V)
            throw std::out_of_range(std::string(what) + ": id " + to_string(p[i]) + " at index " +
                                    to_string(i) + " is outside [0, " + to_string(V) + ")");
}

void check_positive(int64_t v, const char* what) {
    if (v <= 0) bad(std::string(what) + " must be > 0, got " + to_string(v));
}

// ---- RMSNorm ----
void rmsnorm_fwd(py::handle x_, py::handle w_, py::handle y_, py::handle rstd_, float eps,
                 int threads) {
    F32 x = as_f32(x_, "rmsnorm_fwd: x");
    check_ndim(x, 2, "rmsnorm_fwd: x (R, C)");
    const int64_t R = x.shape(0), C = x.shape(1);
    F32 w = as_f32(w_, "rmsnorm_fwd: weight"), y = as_out(y_, "rmsnorm_fwd: out");
    F32 rstd = as_out(rstd_, "rmsnorm_fwd: rstd");
    check_shape(w, {C}, "rmsnorm_fwd: weight");
    check_shape(y, {R, C}, "rmsnorm_fwd: out");
    check_shape(rstd, {R}, "rmsnorm_fwd: rstd");
    if (!(std::isfinite(eps) && eps > 0.0f))
        bad("rmsnorm_fwd: eps must be finite and > 0, got " + to_string(eps));
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::rmsnorm_fwd(x.data(), w.data(), y.mutable_data(), rstd.mutable_data(), R, C, eps, nt);
}

void rmsnorm_bwd(py::handle x_, py::handle w_, py::handle rstd_, py::handle dy_, py::handle dx_,
                 py::handle dw_, int threads) {
    F32 x = as_f32(x_, "rmsnorm_bwd: x");
    check_ndim(x, 2, "rmsnorm_bwd: x (R, C)");
    const int64_t R = x.shape(0), C = x.shape(1);
    F32 w = as_f32(w_, "rmsnorm_bwd: weight"), rstd = as_f32(rstd_, "rmsnorm_bwd: rstd");
    F32 dy = as_f32(dy_, "rmsnorm_bwd: dy");
    F32 dx = as_out(dx_, "rmsnorm_bwd: dx"), dw = as_out(dw_, "rmsnorm_bwd: dweight");
    check_shape(w, {C}, "rmsnorm_bwd: weight");
    check_shape(rstd, {R}, "rmsnorm_bwd: rstd");
    check_shape(dy, {R, C}, "rmsnorm_bwd: dy");
    check_shape(dx, {R, C}, "rmsnorm_bwd: dx");
    check_shape(dw, {C}, "rmsnorm_bwd: dweight");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::rmsnorm_bwd(x.data(), w.data(), rstd.data(), dy.data(), dx.mutable_data(),
                       dw.mutable_data(), R, C, nt);
}

// ---- linear ----
void linear_fwd(py::handle x_, py::handle W_, py::handle b_, py::handle y_, int threads) {
    F32 x = as_f32(x_, "linear_fwd: x"), W = as_f32(W_, "linear_fwd: weight");
    check_ndim(x, 2, "linear_fwd: x (N, IN)");
    check_ndim(W, 2, "linear_fwd: weight (OUT, IN)");
    const int64_t N = x.shape(0), IN = x.shape(1), OUT = W.shape(0);
    if (W.shape(1) != IN)
        bad("linear_fwd: x.shape[1]=" + to_string(IN) +
            " but weight.shape[1]=" + to_string(W.shape(1)));
    F32 b;
    if (!b_.is_none()) {
        b = as_f32(b_, "linear_fwd: bias");
        check_shape(b, {OUT}, "linear_fwd: bias");
    }
    F32 y = as_out(y_, "linear_fwd: out");
    check_shape(y, {N, OUT}, "linear_fwd: out");
    const float* bp = b_.is_none() ? nullptr : b.data();
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::linear_fwd(x.data(), W.data(), bp, y.mutable_data(), N, IN, OUT, nt);
}

void linear_bwd(py::handle x_, py::handle W_, py::handle dy_, py::handle dx_, py::handle dW_,
                py::handle db_, bool accumulate_dx, int threads, bool accumulate_dw) {
    F32 x = as_f32(x_, "linear_bwd: x"), W = as_f32(W_, "linear_bwd: weight");
    check_ndim(x, 2, "linear_bwd: x (N, IN)");
    check_ndim(W, 2, "linear_bwd: weight (OUT, IN)");
    const int64_t N = x.shape(0), IN = x.shape(1), OUT = W.shape(0);
    if (W.shape(1) != IN)
        bad("linear_bwd: x.shape[1]=" + to_string(IN) +
            " but weight.shape[1]=" + to_string(W.shape(1)));
    F32 dy = as_f32(dy_, "linear_bwd: dy");
    check_shape(dy, {N, OUT}, "linear_bwd: dy");
    F32 dx, dW, db;
    if (!dx_.is_none()) {
        dx = as_out(dx_, "linear_bwd: dx");
        check_shape(dx, {N, IN}, "linear_bwd: dx");
    }
    if (!dW_.is_none()) {
        dW = as_out(dW_, "linear_bwd: dweight");
        check_shape(dW, {OUT, IN}, "linear_bwd: dweight");
    }
    if (!db_.is_none()) {
        db = as_out(db_, "linear_bwd: dbias");
        check_shape(db, {OUT}, "linear_bwd: dbias");
    }
    float* dxp = dx_.is_none() ? nullptr : dx.mutable_data();
    float* dWp = dW_.is_none() ? nullptr : dW.mutable_data();
    float* dbp = db_.is_none() ? nullptr : db.mutable_data();
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::linear_bwd(x.data(), W.data(), dy.data(), dxp, dWp, dbp, N, IN, OUT, accumulate_dx, nt,
                      accumulate_dw);
}

// ---- attention: qkv [B*T, (H + 2 Hkv) D] fused, out/dout [B*T, H*D], lse [B, H, T] ----
train::AttnShape attn_shape(const F32& qkv, int64_t B, int64_t T, int H, int Hkv, float scale,
                            const char* fn) {
    check_positive(B, (std::string(fn) + ": B").c_str());
    check_positive(T, (std::string(fn) + ": T").c_str());
    check_positive(H, (std::string(fn) + ": n_heads").c_str());
    check_positive(Hkv, (std::string(fn) + ": n_kv_heads").c_str());
    if (H % Hkv != 0)
        bad(std::string(fn) + ": n_heads=" + to_string(H) +
            " is not a multiple of n_kv_heads=" + to_string(Hkv));
    check_ndim(qkv, 2, (std::string(fn) + ": qkv (B*T, (H + 2 Hkv) D)").c_str());
    const int64_t cols = qkv.shape(1), heads = H + 2 * static_cast<int64_t>(Hkv);
    if (qkv.shape(0) != B * T || cols % heads != 0 || cols == 0)
        bad(std::string(fn) + ": qkv.shape=" + shape_str(qkv) + " does not fit B*T=" +
            to_string(B * T) + " rows of (n_heads + 2 n_kv_heads)=" + to_string(heads) + " heads");
    if (!std::isfinite(scale)) bad(std::string(fn) + ": scale must be finite");
    const int D = static_cast<int>(cols / heads);
    return train::AttnShape{B, T, H, Hkv, D, cols, static_cast<int64_t>(H) * D, scale};
}

void attention_fwd(py::handle qkv_, py::handle o_, py::handle lse_, int64_t B, int64_t T, int H,
                   int Hkv, float scale, int threads) {
    F32 qkv = as_f32(qkv_, "attention_fwd: qkv");
    const train::AttnShape s = attn_shape(qkv, B, T, H, Hkv, scale, "attention_fwd");
    F32 o = as_out(o_, "attention_fwd: out"), lse = as_out(lse_, "attention_fwd: lse");
    check_shape(o, {B * T, s.ldo}, "attention_fwd: out");
    check_shape(lse, {B, H, T}, "attention_fwd: lse");
    const float* q = qkv.data();
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::attention_fwd(s, q, q + H * s.D, q + (H + Hkv) * s.D, o.mutable_data(),
                         lse.mutable_data(), nt);
}

void attention_bwd(py::handle qkv_, py::handle o_, py::handle lse_, py::handle do_,
                   py::handle dqkv_, int64_t B, int64_t T, int H, int Hkv, float scale,
                   int threads) {
    F32 qkv = as_f32(qkv_, "attention_bwd: qkv");
    const train::AttnShape s = attn_shape(qkv, B, T, H, Hkv, scale, "attention_bwd");
    F32 o = as_f32(o_, "attention_bwd: out"), lse = as_f32(lse_, "attention_bwd: lse");
    F32 dout = as_f32(do_, "attention_bwd: dout"), dqkv = as_out(dqkv_, "attention_bwd: dqkv");
    check_shape(o, {B * T, s.ldo}, "attention_bwd: out");
    check_shape(dout, {B * T, s.ldo}, "attention_bwd: dout");
    check_shape(lse, {B, H, T}, "attention_bwd: lse");
    check_shape(dqkv, {B * T, s.ld}, "attention_bwd: dqkv");
    const float* q = qkv.data();
    float* dq = dqkv.mutable_data();
    const int64_t ko = H * s.D, vo = (H + Hkv) * s.D;
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::attention_bwd(s, q, q + ko, q + vo, o.data(), lse.data(), dout.data(), dq, dq + ko,
                         dq + vo, nt);
}

// ---- RoPE over the first n_heads heads of each row; tables cos/sin [T, D/2] ----
void rope(py::handle x_, int64_t T, int n_heads, int head_dim, py::handle cos_, py::handle sin_,
          bool inverse, int threads) {
    F32 x = as_out(x_, "rope: x");
    check_ndim(x, 2, "rope: x (B*T, cols)");
    check_positive(T, "rope: T");
    check_positive(n_heads, "rope: n_heads");
    if (head_dim <= 0 || head_dim % 2)
        bad("rope: head_dim=" + to_string(head_dim) + " must be even and > 0");
    const int64_t N = x.shape(0), ld = x.shape(1);
    if (N % T) bad("rope: x.shape[0]=" + to_string(N) + " is not a multiple of T=" + to_string(T));
    if (static_cast<int64_t>(n_heads) * head_dim > ld)
        bad("rope: n_heads * head_dim=" + to_string(n_heads * head_dim) +
            " > x.shape[1]=" + to_string(ld));
    F32 c = as_f32(cos_, "rope: cos"), s = as_f32(sin_, "rope: sin");
    check_shape(c, {T, head_dim / 2}, "rope: cos");
    check_shape(s, {T, head_dim / 2}, "rope: sin");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::rope(x.mutable_data(), ld, N, T, n_heads, head_dim, c.data(), s.data(), inverse, nt);
}

// ---- SwiGLU: gu [N, 2F] = (gate, up) ----
void swiglu_fwd(py::handle gu_, py::handle h_, int threads) {
    F32 gu = as_f32(gu_, "swiglu_fwd: gate_up");
    check_ndim(gu, 2, "swiglu_fwd: gate_up (N, 2F)");
    if (gu.shape(1) % 2) bad("swiglu_fwd: gate_up.shape[1]=" + to_string(gu.shape(1)) + " is odd");
    const int64_t N = gu.shape(0), F = gu.shape(1) / 2;
    F32 h = as_out(h_, "swiglu_fwd: out");
    check_shape(h, {N, F}, "swiglu_fwd: out");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::swiglu_fwd(gu.data(), h.mutable_data(), N, F, nt);
}

void swiglu_bwd(py::handle gu_, py::handle dh_, py::handle dgu_, int threads) {
    F32 gu = as_f32(gu_, "swiglu_bwd: gate_up");
    check_ndim(gu, 2, "swiglu_bwd: gate_up (N, 2F)");
    if (gu.shape(1) % 2) bad("swiglu_bwd: gate_up.shape[1]=" + to_string(gu.shape(1)) + " is odd");
    const int64_t N = gu.shape(0), F = gu.shape(1) / 2;
    F32 dh = as_f32(dh_, "swiglu_bwd: dout"), dgu = as_out(dgu_, "swiglu_bwd: dgate_up");
    check_shape(dh, {N, F}, "swiglu_bwd: dout");
    check_shape(dgu, {N, 2 * F}, "swiglu_bwd: dgate_up");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::swiglu_bwd(gu.data(), dh.data(), dgu.mutable_data(), N, F, nt);
}

// ---- embedding ----
void embedding_fwd(py::handle ids_, py::handle W_, py::handle out_, int threads) {
    I32 ids = as_i32(ids_, "embedding_fwd: ids");
    F32 W = as_f32(W_, "embedding_fwd: weight");
    check_ndim(W, 2, "embedding_fwd: weight (V, C)");
    check_ids(ids, W.shape(0), "embedding_fwd: ids");
    const int64_t N = ids.size(), C = W.shape(1);
    F32 out = as_out(out_, "embedding_fwd: out");
    check_shape(out, {N, C}, "embedding_fwd: out");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::embedding_fwd(ids.data(), W.data(), out.mutable_data(), N, C, nt);
}

void embedding_bwd(py::handle ids_, py::handle dout_, py::handle dW_, int threads) {
    I32 ids = as_i32(ids_, "embedding_bwd: ids");
    F32 dW = as_out(dW_, "embedding_bwd: dweight");
    check_ndim(dW, 2, "embedding_bwd: dweight (V, C)");
    check_ids(ids, dW.shape(0), "embedding_bwd: ids");
    const int64_t N = ids.size(), C = dW.shape(1);
    F32 dout = as_f32(dout_, "embedding_bwd: dout");
    check_shape(dout, {N, C}, "embedding_bwd: dout");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::embedding_bwd(ids.data(), dout.data(), dW.mutable_data(), N, C, nt);
}

// ---- softmax + cross-entropy ----
void softmax_xent(py::handle z_, py::handle t_, py::handle loss_, float grad_scale, bool grad,
                  int threads) {
    F32 z = as_out(z_, "softmax_xent: logits");
    check_ndim(z, 2, "softmax_xent: logits (N, V)");
    const int64_t N = z.shape(0), V = z.shape(1);
    I32 t = as_i32(t_, "softmax_xent: targets");
    check_shape(t, {N}, "softmax_xent: targets");
    const int32_t* tp = t.data();
    for (int64_t i = 0; i < N; ++i)
        if (tp[i] >= V)
            throw std::out_of_range("softmax_xent: target " + to_string(tp[i]) + " at index " +
                                    to_string(i) + " is >= V=" + to_string(V));
    F32 loss = as_out(loss_, "softmax_xent: losses");
    check_shape(loss, {N}, "softmax_xent: losses");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::softmax_xent(z.mutable_data(), tp, loss.mutable_data(), N, V, grad_scale, grad, nt);
}

// ---- elementwise / optimizer ----
void same_size(const py::array& a, const py::array& b, const char* what) {
    if (a.size() != b.size())
        bad(std::string(what) + ": size " + to_string(b.size()) + " != " + to_string(a.size()));
}

void add(py::handle a_, py::handle b_, py::handle out_, int threads) {
    F32 a = as_f32(a_, "add: a"), b = as_f32(b_, "add: b"), out = as_out(out_, "add: out");
    same_size(a, b, "add: b");
    same_size(a, out, "add: out");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::add(a.data(), b.data(), out.mutable_data(), a.size(), nt);
}

double sq_err(py::handle y_, py::handle t_, py::handle dy_) {
    F32 y = as_f32(y_, "sq_err: y"), t = as_f32(t_, "sq_err: target"),
        dy = as_out(dy_, "sq_err: dy");
    same_size(y, t, "sq_err: target");
    same_size(y, dy, "sq_err: dy");
    return train::sq_err(y.data(), t.data(), dy.mutable_data(), y.size());
}

void adamw(py::handle p_, py::handle g_, py::handle m_, py::handle v_, float lr, float beta1,
           float beta2, float eps, float weight_decay, int64_t step, float grad_scale,
           int threads) {
    F32 p = as_out(p_, "adamw: param"), g = as_f32(g_, "adamw: grad");
    F32 m = as_out(m_, "adamw: m"), v = as_out(v_, "adamw: v");
    same_size(p, g, "adamw: grad");
    same_size(p, m, "adamw: m");
    same_size(p, v, "adamw: v");
    if (step < 1) bad("adamw: step must be >= 1, got " + to_string(step));
    if (!(beta1 >= 0.0f && beta1 < 1.0f))
        bad("adamw: beta1 must be in [0, 1), got " + to_string(beta1));
    if (!(beta2 >= 0.0f && beta2 < 1.0f))
        bad("adamw: beta2 must be in [0, 1), got " + to_string(beta2));
    if (!(eps > 0.0f)) bad("adamw: eps must be > 0, got " + to_string(eps));
    if (!std::isfinite(lr) || !std::isfinite(weight_decay) || !std::isfinite(grad_scale))
        bad("adamw: lr, weight_decay and grad_scale must be finite");
    const train::AdamWArgs a{lr, beta1, beta2, eps, weight_decay, step, grad_scale};
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::adamw(p.mutable_data(), g.data(), m.mutable_data(), v.mutable_data(), p.size(), a, nt);
}

void sgd(py::handle p_, py::handle g_, float lr, int threads) {
    F32 p = as_out(p_, "sgd: param"), g = as_f32(g_, "sgd: grad");
    same_size(p, g, "sgd: grad");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::sgd(p.mutable_data(), g.data(), p.size(), lr, nt);
}

double sum_squares(py::handle x_, int threads) {
    F32 x = as_f32(x_, "sum_squares: x");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    return train::sum_squares(x.data(), x.size(), nt);
}

void scale(py::handle x_, float s, int threads) {
    F32 x = as_out(x_, "scale: x");
    const int nt = resolve_threads(threads);
    py::gil_scoped_release nogil;
    train::scale(x.mutable_data(), x.size(), s, nt);
}

}  // namespace

void bind_train(py::module_& m) {
    py::module_ t = m.def_submodule("train", "Training ops: forward and hand-derived backward");
    const auto th = py::arg("threads") = 0;
    t.def("rmsnorm_fwd", &rmsnorm_fwd, py::arg("x"), py::arg("weight"), py::arg("out"),
          py::arg("rstd"), py::arg("eps"), th);
    t.def("rmsnorm_bwd", &rmsnorm_bwd, py::arg("x"), py::arg("weight"), py::arg("rstd"),
          py::arg("dy"), py::arg("dx"), py::arg("dweight"), th);
    t.def("linear_fwd", &linear_fwd, py::arg("x"), py::arg("weight"), py::arg("bias"),
          py::arg("out"), th);
    t.def("linear_bwd", &linear_bwd, py::arg("x"), py::arg("weight"), py::arg("dy"), py::arg("dx"),
          py::arg("dweight"), py::arg("dbias"), py::arg("accumulate_dx") = false, th,
          py::arg("accumulate_dw") = true);
    t.def("attention_fwd", &attention_fwd, py::arg("qkv"), py::arg("out"), py::arg("lse"),
          py::arg("B"), py::arg("T"), py::arg("n_heads"), py::arg("n_kv_heads"), py::arg("scale"),
          th);
    t.def("attention_bwd", &attention_bwd, py::arg("qkv"), py::arg("out"), py::arg("lse"),
          py::arg("dout"), py::arg("dqkv"), py::arg("B"), py::arg("T"), py::arg("n_heads"),
          py::arg("n_kv_heads"), py::arg("scale"), th);
    t.def("rope", &rope, py::arg("x"), py::arg("T"), py::arg("n_heads"), py::arg("head_dim"),
          py::arg("cos"), py::arg("sin"), py::arg("inverse") = false, th);
    t.def("swiglu_fwd", &swiglu_fwd, py::arg("gate_up"), py::arg("out"), th);
    t.def("swiglu_bwd", &swiglu_bwd, py::arg("gate_up"), py::arg("dout"), py::arg("dgate_up"), th);
    t.def("embedding_fwd", &embedding_fwd, py::arg("ids"), py::arg("weight"), py::arg("out"), th);
    t.def("embedding_bwd", &embedding_bwd, py::arg("ids"), py::arg("dout"), py::arg("dweight"), th);
    t.def("softmax_xent", &softmax_xent, py::arg("logits"), py::arg("targets"), py::arg("losses"),
          py::arg("grad_scale") = 1.0f, py::arg("grad") = true, th);
    t.def("add", &add, py::arg("a"), py::arg("b"), py::arg("out"), th);
    t.def("sq_err", &sq_err, py::arg("y"), py::arg("target"), py::arg("dy"));
    t.def("adamw", &adamw, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
          py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("step"), py::arg("grad_scale") = 1.0f, th);
    t.def("sgd", &sgd, py::arg("param"), py::arg("grad"), py::arg("lr"), th);
    t.def("sum_squares", &sum_squares, py::arg("x"), th);
    t.def("scale", &scale, py::arg("x"), py::arg("s"), th);
}

}  // namespace pylm
