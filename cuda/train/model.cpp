// The Llama training step on the GPU (model.h). Mirrors pylm/train/model.py line by line:
//
//   x_0 = embed(ids);  per layer: h1 = rmsnorm(x) ; qkv = h1 Wqkv^T ; rope(q, k) ;
//   att = flash_attn(q, k, v) ; m = x + att Wo^T ; h2 = rmsnorm(m) ; gu = h2 Wgu^T ;
//   act = silu(gate) * up ; x' = m + act Wdown^T ;  logits = rmsnorm(x_L) Wout^T ; xent.
// Linear layers are GEMMs with transposes (gemm.cuh): y = x W^T, dx = dy W, dW += dy^T x. The
// residual adds are fused into the GEMM (copy the residual, then beta = 1).
#include "train/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "attention.cuh"
#include "gemm.cuh"
#include "train/train_ops.cuh"

namespace pylm {
namespace cuda {
namespace train {

DevBuf::DevBuf(size_t bytes) : n_(bytes) {
    PYLM_CUDA_CHECK(cudaMalloc(&p_, bytes ? bytes : 1));
}
DevBuf::~DevBuf() {
    if (p_) cudaFree(p_);
}
DevBuf& DevBuf::operator=(DevBuf&& o) noexcept {
    if (this != &o) {
        if (p_) cudaFree(p_);
        p_ = o.p_;
        n_ = o.n_;
        o.p_ = nullptr;
        o.n_ = 0;
    }
    return *this;
}

// Activations and scratch for one (B, T); sizes as pylm/train/model.py's _Acts.
struct TrainModel::Acts {
    int64_t B = 0, T = 0, N = 0;
    std::vector<DevBuf> res, mid, h1, rstd1, qkv, att, lse, h2, rstd2, gu, act;
    DevBuf hf, rstdf, logits, losses, dres, dres_a, dh, datt, dqkv, dact, dgu, ws, ids, targets,
        cos, sin;
    std::vector<float> losses_host;
    int64_t n_valid = 0;
};

static size_t esize(DType t) { return static_cast<size_t>(dtype_size(t)); }
static char* bytes(const void* p) { return static_cast<char*>(const_cast<void*>(p)); }

TrainModel::TrainModel(const ModelShape& s, DType act, int64_t n_params,
                       const std::map<std::string, int64_t>& offsets, int device)
    : s_(s), act_(act), P_(n_params), off_(offsets), device_(device) {
    if (act != DType::F32 && act != DType::BF16)
        throw std::invalid_argument(std::string("TrainModel: dtype must be float32 or bfloat16, got ") +
                                    dtype_name(act));
    if (s.D != 64 && s.D != 128)
        throw std::invalid_argument("TrainModel: head_dim=" + std::to_string(s.D) +
                                    " is not supported on CUDA (64 or 128)");
    PYLM_CUDA_CHECK(cudaSetDevice(device));
    PYLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const size_t pb = static_cast<size_t>(P_) * sizeof(float);
    params_ = DevBuf(pb);
    grads_ = DevBuf(pb);
    m_ = DevBuf(pb);
    v_ = DevBuf(pb);
    if (act_ == DType::BF16) params_a_ = DevBuf(static_cast<size_t>(P_) * 2);
    scalar_ = DevBuf(sizeof(double));
    ss_ws_ = DevBuf(sum_squares_workspace());
    PYLM_CUDA_CHECK(cudaMemsetAsync(grads_.get(), 0, pb, stream_));
    PYLM_CUDA_CHECK(cudaMemsetAsync(m_.get(), 0, pb, stream_));
    PYLM_CUDA_CHECK(cudaMemsetAsync(v_.get(), 0, pb, stream_));
    scale_ = 1.0f / std::sqrt(static_cast<float>(s.D));
}

TrainModel::~TrainModel() {
    delete acts_;
    if (stream_) cudaStreamDestroy(stream_);
}

float* TrainModel::p(const std::string& name) const {
    auto it = off_.find(name);
    if (it == off_.end()) throw std::out_of_range("TrainModel: no parameter '" + name + "'");
    return params_.as<float>() + it->second;
}

const void* TrainModel::pa(const std::string& name) const {
    if (act_ == DType::F32) return p(name);
    return params_a_.as<char>() + off_.at(name) * 2;
}

float* TrainModel::g(const std::string& name) const {
    if (frozen_.count(name)) return nullptr;
    return grads_.as<float>() + off_.at(name);
}

void TrainModel::set_params(const float* host) {
    PYLM_CUDA_CHECK(cudaMemcpyAsync(params_.get(), host, P_ * sizeof(float),
                                    cudaMemcpyHostToDevice, stream_));
    if (act_ == DType::BF16) cast_f32(DType::BF16, params_.as<float>(), params_a_.get(), P_, stream_);
    synchronize();
}

void TrainModel::get_params(float* host) const {
    PYLM_CUDA_CHECK(cudaMemcpyAsync(host, params_.get(), P_ * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
    synchronize();
}

void TrainModel::get_grads(float* host) const {
    PYLM_CUDA_CHECK(cudaMemcpyAsync(host, grads_.get(), P_ * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
    synchronize();
}

void TrainModel::set_moments(const float* m, const float* v) {
    PYLM_CUDA_CHECK(cudaMemcpyAsync(m_.get(), m, P_ * sizeof(float), cudaMemcpyHostToDevice, stream_));
    PYLM_CUDA_CHECK(cudaMemcpyAsync(v_.get(), v, P_ * sizeof(float), cudaMemcpyHostToDevice, stream_));
    synchronize();
}

void TrainModel::get_moments(float* m, float* v) const {
    PYLM_CUDA_CHECK(cudaMemcpyAsync(m, m_.get(), P_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    PYLM_CUDA_CHECK(cudaMemcpyAsync(v, v_.get(), P_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    synchronize();
}

void TrainModel::synchronize() const { PYLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

void TrainModel::ensure_acts(int64_t B, int64_t T) {
    if (acts_ && acts_->B == B && acts_->T == T) return;
    delete acts_;
    acts_ = nullptr;
    auto* a = new Acts();
    try {
        const int64_t N = B * T, C = s_.C, F = s_.F, L = s_.L, HD = s_.H * s_.D;
        const int64_t QKV = (s_.H + 2 * s_.Hkv) * s_.D;
        const size_t ea = esize(act_), f4 = sizeof(float);
        a->B = B, a->T = T, a->N = N;
        for (int64_t l = 0; l <= L; ++l) a->res.emplace_back(N * C * f4);
        for (int64_t l = 0; l < L; ++l) {
            a->mid.emplace_back(N * C * f4);
            a->h1.emplace_back(N * C * ea);
            a->rstd1.emplace_back(N * f4);
            a->qkv.emplace_back(N * QKV * ea);
            a->att.emplace_back(N * HD * ea);
            a->lse.emplace_back(N * s_.H * f4);
            a->h2.emplace_back(N * C * ea);
            a->rstd2.emplace_back(N * f4);
            a->gu.emplace_back(N * 2 * F * ea);
            a->act.emplace_back(N * F * ea);
        }
        a->hf = DevBuf(N * C * ea);
        a->rstdf = DevBuf(N * f4);
        a->logits = DevBuf(N * s_.V * ea);
        a->losses = DevBuf(N * f4);
        a->dres = DevBuf(N * C * f4);
        if (act_ != DType::F32) a->dres_a = DevBuf(N * C * ea);
        a->dh = DevBuf(N * C * f4);
        a->datt = DevBuf(N * HD * ea);
        a->dqkv = DevBuf(N * QKV * ea);
        a->dact = DevBuf(N * F * f4);
        a->dgu = DevBuf(N * 2 * F * ea);
        AttnBwdParams ap;
        ap.B = static_cast<int>(B), ap.T = static_cast<int>(T), ap.H = static_cast<int>(s_.H);
        ap.D = static_cast<int>(s_.D);
        size_t ws = attention_bwd_workspace(ap);
        ws = std::max(ws, rmsnorm_bwd_workspace(N, C));
        a->ws = DevBuf(ws);
        a->ids = DevBuf(N * sizeof(int32_t));
        a->targets = DevBuf(N * sizeof(int32_t));
        a->losses_host.resize(N);
        // RoPE tables [T, D/2], angles in double as pylm.train.ops.rope_tables
        const int64_t half = s_.D / 2;
        std::vector<float> c(T * half), sn(T * half);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < half; ++i) {
                const double inv = std::pow(static_cast<double>(s_.rope_base),
                                            -2.0 * static_cast<double>(i) / s_.D);
                const double ang = static_cast<double>(t) * inv;
                c[t * half + i] = static_cast<float>(std::cos(ang));
                sn[t * half + i] = static_cast<float>(std::sin(ang));
            }
        a->cos = DevBuf(c.size() * f4);
        a->sin = DevBuf(sn.size() * f4);
        PYLM_CUDA_CHECK(cudaMemcpy(a->cos.get(), c.data(), c.size() * f4, cudaMemcpyHostToDevice));
        PYLM_CUDA_CHECK(cudaMemcpy(a->sin.get(), sn.data(), sn.size() * f4, cudaMemcpyHostToDevice));
    } catch (...) {
        delete a;
        throw;
    }
    acts_ = a;
}

// y [N, OUT] (ydt) = x [N, IN] W^T (+ beta y)
void TrainModel::linear_fwd(const void* x, const std::string& w, int64_t N, int64_t IN,
                            int64_t OUT, void* y, DType ydt, float beta) {
    gemm(false, true, N, OUT, IN, 1.f, act_, x, IN, pa(w), IN, beta, ydt, y, OUT, stream_);
}

// dx [N, IN] (dxdt) = dy [N, OUT] W;  dW [OUT, IN] += dy^T x  (skipped when frozen)
void TrainModel::linear_bwd(const void* x, const std::string& w, const void* dy, int64_t N,
                            int64_t IN, int64_t OUT, void* dx, DType dxdt) {
    if (float* gw = g(w))
        gemm(true, false, OUT, IN, N, 1.f, act_, dy, OUT, x, IN, 1.f, DType::F32, gw, IN, stream_);
    gemm(false, false, N, IN, OUT, 1.f, act_, dy, OUT, pa(w), IN, 0.f, dxdt, dx, IN, stream_);
}

double TrainModel::forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T,
                           bool grad) {
    ensure_acts(B, T);
    Acts& a = *acts_;
    const int64_t N = a.N, C = s_.C, F = s_.F, H = s_.H, Hkv = s_.Hkv, D = s_.D, HD = H * D;
    const int64_t QKV = (H + 2 * Hkv) * D;
    const size_t ea = esize(act_);
    cudaStream_t st = stream_;
    have_fwd_ = false;
    PYLM_CUDA_CHECK(cudaMemcpyAsync(a.ids.get(), ids, N * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    embedding_fwd(a.ids.as<int32_t>(), p("token_embd.weight"), a.res[0].as<float>(), N, C, st);
    for (int64_t l = 0; l < s_.L; ++l) {
        const std::string w = "blk." + std::to_string(l) + ".";
        rmsnorm_fwd(act_, a.res[l].as<float>(), p(w + "attn_norm.weight"), a.h1[l].get(),
                    a.rstd1[l].as<float>(), N, C, s_.eps, st);
        linear_fwd(a.h1[l].get(), w + "attn_qkv.weight", N, C, QKV, a.qkv[l].get(), act_, 0.f);
        rope(act_, a.qkv[l].get(), QKV, N, T, static_cast<int>(H + Hkv), static_cast<int>(D),
             a.cos.as<float>(), a.sin.as<float>(), false, st);
        FlashAttnParams fp;
        fp.dtype = act_;
        fp.q = a.qkv[l].get();
        fp.k = bytes(a.qkv[l].get()) + H * D * ea;
        fp.v = bytes(a.qkv[l].get()) + (H + Hkv) * D * ea;
        fp.o = a.att[l].get();
        fp.lse = a.lse[l].as<float>();
        fp.B = static_cast<int>(B), fp.Tq = fp.Tk = static_cast<int>(T);
        fp.Hq = static_cast<int>(H), fp.Hkv = static_cast<int>(Hkv), fp.D = static_cast<int>(D);
        fp.q_stride_b = fp.k_stride_b = fp.v_stride_b = T * QKV;
        fp.q_stride_t = fp.k_stride_t = fp.v_stride_t = QKV;
        fp.o_stride_b = T * HD, fp.o_stride_t = HD;
        fp.scale = scale_;
        fp.causal = true;
        flash_attn_fwd(fp, st);
        PYLM_CUDA_CHECK(cudaMemcpyAsync(a.mid[l].get(), a.res[l].get(), N * C * sizeof(float),
                                        cudaMemcpyDeviceToDevice, st));
        linear_fwd(a.att[l].get(), w + "attn_output.weight", N, HD, C, a.mid[l].get(), DType::F32, 1.f);
        rmsnorm_fwd(act_, a.mid[l].as<float>(), p(w + "ffn_norm.weight"), a.h2[l].get(),
                    a.rstd2[l].as<float>(), N, C, s_.eps, st);
        linear_fwd(a.h2[l].get(), w + "ffn_gate_up.weight", N, C, 2 * F, a.gu[l].get(), act_, 0.f);
        swiglu_fwd(act_, a.gu[l].get(), a.act[l].get(), N, F, st);
        PYLM_CUDA_CHECK(cudaMemcpyAsync(a.res[l + 1].get(), a.mid[l].get(), N * C * sizeof(float),
                                        cudaMemcpyDeviceToDevice, st));
        linear_fwd(a.act[l].get(), w + "ffn_down.weight", N, F, C, a.res[l + 1].get(), DType::F32, 1.f);
    }
    rmsnorm_fwd(act_, a.res[s_.L].as<float>(), p("output_norm.weight"), a.hf.get(),
                a.rstdf.as<float>(), N, C, s_.eps, st);
    const std::string wout = s_.tie ? "token_embd.weight" : "output.weight";
    linear_fwd(a.hf.get(), wout, N, C, s_.V, a.logits.get(), act_, 0.f);
    if (!targets) {
        synchronize();
        return 0.0;
    }
    a.n_valid = 0;
    for (int64_t n = 0; n < N; ++n) a.n_valid += targets[n] >= 0;
    PYLM_CUDA_CHECK(cudaMemcpyAsync(a.targets.get(), targets, N * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st));
    const float gscale = 1.0f / static_cast<float>(a.n_valid > 0 ? a.n_valid : 1);
    softmax_xent(act_, a.logits.get(), a.targets.as<int32_t>(), a.losses.as<float>(), N, s_.V,
                 gscale, grad, st);
    PYLM_CUDA_CHECK(cudaMemcpyAsync(a.losses_host.data(), a.losses.get(), N * sizeof(float),
                                    cudaMemcpyDeviceToHost, st));
    synchronize();
    double sum = 0.0;
    for (int64_t n = 0; n < N; ++n) sum += a.losses_host[n];
    have_fwd_ = grad;
    return sum / static_cast<double>(a.n_valid > 0 ? a.n_valid : 1);
}

void TrainModel::logits(float* host) const {
    if (!acts_) throw std::runtime_error("TrainModel.logits: no forward pass yet");
    const int64_t n = acts_->N * s_.V;
    if (act_ == DType::F32) {
        PYLM_CUDA_CHECK(cudaMemcpyAsync(host, acts_->logits.get(), n * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream_));
        synchronize();
        return;
    }
    std::vector<uint16_t> raw(n);
    PYLM_CUDA_CHECK(cudaMemcpyAsync(raw.data(), acts_->logits.get(), n * 2, cudaMemcpyDeviceToHost,
                                    stream_));
    synchronize();
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t u = static_cast<uint32_t>(raw[i]) << 16;
        std::memcpy(host + i, &u, 4);
    }
}

void TrainModel::backward() {
    if (!have_fwd_)
        throw std::runtime_error("backward() needs a preceding forward(ids, targets, grad=True)");
    have_fwd_ = false;
    Acts& a = *acts_;
    const int64_t N = a.N, C = s_.C, F = s_.F, H = s_.H, Hkv = s_.Hkv, D = s_.D, HD = H * D;
    const int64_t QKV = (H + 2 * Hkv) * D, L = s_.L;
    const size_t ea = esize(act_);
    cudaStream_t st = stream_;
    float* dres = a.dres.as<float>();
    // the GEMM operand copy of dres (dres itself in fp32)
    void* dres_a = act_ == DType::F32 ? a.dres.get() : a.dres_a.get();
    void* dres_cast = act_ == DType::F32 ? nullptr : a.dres_a.get();
    const std::string wout = s_.tie ? "token_embd.weight" : "output.weight";
    linear_bwd(a.hf.get(), wout, a.logits.get(), N, C, s_.V, a.dh.get(), DType::F32);
    rmsnorm_bwd(act_, a.res[L].as<float>(), p("output_norm.weight"), a.rstdf.as<float>(),
                a.dh.as<float>(), dres, false, dres_cast, g("output_norm.weight"), N, C,
                a.ws.get(), st);
    for (int64_t l = L - 1; l >= 0; --l) {
        const std::string w = "blk." + std::to_string(l) + ".";
        linear_bwd(a.act[l].get(), w + "ffn_down.weight", dres_a, N, F, C, a.dact.get(), DType::F32);
        swiglu_bwd(act_, a.gu[l].get(), a.dact.as<float>(), a.dgu.get(), N, F, st);
        linear_bwd(a.h2[l].get(), w + "ffn_gate_up.weight", a.dgu.get(), N, C, 2 * F, a.dh.get(),
                   DType::F32);
        rmsnorm_bwd(act_, a.mid[l].as<float>(), p(w + "ffn_norm.weight"), a.rstd2[l].as<float>(),
                    a.dh.as<float>(), dres, true, dres_cast, g(w + "ffn_norm.weight"), N, C,
                    a.ws.get(), st);
        linear_bwd(a.att[l].get(), w + "attn_output.weight", dres_a, N, HD, C, a.datt.get(), act_);
        AttnBwdParams bp;
        bp.dt = act_;
        bp.q = a.qkv[l].get();
        bp.k = bytes(a.qkv[l].get()) + H * D * ea;
        bp.v = bytes(a.qkv[l].get()) + (H + Hkv) * D * ea;
        bp.o = a.att[l].get();
        bp.dout = a.datt.get();
        bp.lse = a.lse[l].as<float>();
        bp.dq = a.dqkv.get();
        bp.dk = bytes(a.dqkv.get()) + H * D * ea;
        bp.dv = bytes(a.dqkv.get()) + (H + Hkv) * D * ea;
        bp.B = static_cast<int>(a.B), bp.T = static_cast<int>(a.T);
        bp.H = static_cast<int>(H), bp.Hkv = static_cast<int>(Hkv), bp.D = static_cast<int>(D);
        bp.ld = QKV, bp.ldo = HD;
        bp.scale = scale_;
        attention_bwd(bp, a.ws.get(), st);
        rope(act_, a.dqkv.get(), QKV, N, a.T, static_cast<int>(H + Hkv), static_cast<int>(D),
             a.cos.as<float>(), a.sin.as<float>(), true, st);
        linear_bwd(a.h1[l].get(), w + "attn_qkv.weight", a.dqkv.get(), N, C, QKV, a.dh.get(),
                   DType::F32);
        rmsnorm_bwd(act_, a.res[l].as<float>(), p(w + "attn_norm.weight"), a.rstd1[l].as<float>(),
                    a.dh.as<float>(), dres, true, dres_cast, g(w + "attn_norm.weight"), N, C,
                    a.ws.get(), st);
    }
    if (float* ge = g("token_embd.weight")) embedding_bwd(a.ids.as<int32_t>(), dres, ge, N, C, st);
}

void TrainModel::zero_grad() {
    PYLM_CUDA_CHECK(cudaMemsetAsync(grads_.get(), 0, P_ * sizeof(float), stream_));
}

double TrainModel::grad_sum_squares() {
    sum_squares(grads_.as<float>(), P_, scalar_.as<double>(), ss_ws_.get(), stream_);
    double out = 0.0;
    PYLM_CUDA_CHECK(cudaMemcpyAsync(&out, scalar_.get(), sizeof(double), cudaMemcpyDeviceToHost,
                                    stream_));
    synchronize();
    return out;
}

void TrainModel::adamw(const std::vector<Segment>& segs, float lr, float b1, float b2, float eps,
                       int64_t step, float grad_scale) {
    for (const Segment& sg : segs) {
        if (sg.a < 0 || sg.b > P_ || sg.a > sg.b)
            throw std::out_of_range("TrainModel.adamw: segment [" + std::to_string(sg.a) + ", " +
                                    std::to_string(sg.b) + ") outside [0, " + std::to_string(P_) + ")");
        AdamWArgs args{lr, b1, b2, eps, sg.wd, step, grad_scale};
        void* pbf = act_ == DType::BF16 ? params_a_.as<char>() + sg.a * 2 : nullptr;
        train::adamw(params_.as<float>() + sg.a, grads_.as<float>() + sg.a, m_.as<float>() + sg.a,
                     v_.as<float>() + sg.a, pbf, sg.b - sg.a, args, stream_);
    }
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm
