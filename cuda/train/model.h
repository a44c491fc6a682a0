// The Llama training step on the GPU (host orchestration of train_ops.cuh, gemm.cuh and
// flash_attn_fwd), the twin of pylm/train/model.py: same parameter layout (one flat f32
// buffer, offsets given by Python's ParamBuffer), same forward, same hand-derived backward.
//
// Precision: act = F32 runs everything in fp32; act = BF16 keeps fp32 master weights,
// gradients, AdamW moments and the residual stream, and runs the GEMMs / attention on bf16
// activations and a bf16 copy of the weights (refreshed by the fused AdamW).
//
// Device memory is owned here (cudaMalloc); the host sees parameters, gradients and moments
// only through explicit copies. All work runs on one stream owned by the model.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common.cuh"

namespace pylm {
namespace cuda {
namespace train {

struct ModelShape {
    int64_t V = 0, C = 0, L = 0, H = 0, Hkv = 0, F = 0, D = 0;
    float eps = 1e-5f, rope_base = 10000.f;
    bool tie = false;
};

class DevBuf {
  public:
    DevBuf() = default;
    explicit DevBuf(size_t bytes);
    ~DevBuf();
    DevBuf(DevBuf&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
    DevBuf& operator=(DevBuf&& o) noexcept;
    DevBuf(const DevBuf&) = delete;
    DevBuf& operator=(const DevBuf&) = delete;
    void* get() const { return p_; }
    template <typename X> X* as() const { return static_cast<X*>(p_); }
    size_t bytes() const { return n_; }

  private:
    void* p_ = nullptr;
    size_t n_ = 0;
};

struct Segment {  // AdamW range [a, b) of the flat buffer with its weight decay
    int64_t a, b;
    float wd;
};

class TrainModel {
  public:
    // offsets: element offset of every parameter name in the flat buffer of n_params floats.
    TrainModel(const ModelShape& s, DType act, int64_t n_params,
               const std::map<std::string, int64_t>& offsets, int device);
    ~TrainModel();

    void set_params(const float* host);  // [n_params], also refreshes the bf16 copy
    void get_params(float* host) const;
    void get_grads(float* host) const;
    void set_moments(const float* m, const float* v);
    void get_moments(float* m, float* v) const;
    void set_frozen(const std::set<std::string>& names) { frozen_ = names; }

    // ids, targets [B*T] host int32 (targets may be null: no loss). Returns the mean loss over
    // counted rows (targets >= 0), or 0 without targets. grad keeps d(loss)/d(logits).
    double forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, bool grad);
    void logits(float* host) const;  // [B*T, V] of the last forward, as f32
    void backward();
    void zero_grad();
    double grad_sum_squares();
    void adamw(const std::vector<Segment>& segs, float lr, float b1, float b2, float eps,
               int64_t step, float grad_scale);
    void synchronize() const;

    int64_t n_params() const { return P_; }
    DType act() const { return act_; }

  private:
    struct Acts;
    float* p(const std::string& name) const;     // master f32 weight
    const void* pa(const std::string& name) const;  // GEMM operand (act dtype)
    float* g(const std::string& name) const;     // gradient, or nullptr when frozen
    void ensure_acts(int64_t B, int64_t T);
    void linear_fwd(const void* x, const std::string& w, int64_t N, int64_t IN, int64_t OUT,
                    void* y, DType ydt, float beta);
    void linear_bwd(const void* x, const std::string& w, const void* dy, int64_t N, int64_t IN,
                    int64_t OUT, void* dx, DType dxdt);

    ModelShape s_;
    DType act_;
    int64_t P_;
    std::map<std::string, int64_t> off_;
    std::set<std::string> frozen_;
    int device_;
    cudaStream_t stream_ = nullptr;
    DevBuf params_, grads_, m_, v_, params_a_, scalar_, ss_ws_;
    Acts* acts_ = nullptr;
    bool have_fwd_ = false;
    float scale_;
};

}  // namespace train
}  // namespace cuda
}  // namespace pylm
