// Training ops on the GPU — launcher contract (owner: cuda/train/*.cu). The CUDA twins of
// csrc/train (same formulas, same layouts); GEMMs go through cuda/gemm.cuh and the attention
// forward through cuda/attention.cuh (flash_attn_fwd with lse).
//
// Storage dtype `dt` (F32 or BF16) applies to the activations that feed the tensor cores; the
// residual stream, its gradient, rstd / lse / losses, master weights, gradients and the AdamW
// moments are always F32. Math is fp32 everywhere. All launchers are asynchronous on `stream`
// and assume the documented contract (the bindings validate).
//
// Shape letters: N rows (= B sequences x T tokens, row n at position n % T), C channels,
// F SwiGLU width, V vocab, H query heads, Hkv key/value heads, D head dim.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {
namespace train {

// ---- RMSNorm (csrc/train/rmsnorm.h) ----
// y [R, C] (dt) = x [R, C] f32 * r * w [C],  rstd [R] = r = 1 / sqrt(mean(x^2) + eps)
void rmsnorm_fwd(DType dt, const float* x, const float* w, void* y, float* rstd, int64_t R,
                 int64_t C, float eps, cudaStream_t stream);
// dx [R, C] f32 (+)= r * (g - xhat * mean(g * xhat)), g = dy * w;  dw [C] += sum_rows dy * xhat.
// accumulate=false overwrites dx. dx_cast (dt, may be null) receives a copy of the updated dx
// (the next GEMM's operand). dw may be null (frozen weight). Deterministic: per-block partial
// sums of dw in `ws`, added in block order.
size_t rmsnorm_bwd_workspace(int64_t R, int64_t C);  // bytes
void rmsnorm_bwd(DType dt, const float* x, const float* w, const float* rstd, const float* dy,
                 float* dx, bool accumulate, void* dx_cast, float* dw, int64_t R, int64_t C,
                 void* ws, cudaStream_t stream);

// ---- RoPE, llama.cpp "normal" layout (pairs 2i, 2i+1), in place ----
// x: N rows of stride ld (elements), the first H heads of D channels of each row rotate by the
// angle of position n % T: cos, sin [T, D/2] f32 (pylm.train.ops.rope_tables). inverse: by
// -theta (the backward: the map is orthogonal).
void rope(DType dt, void* x, int64_t ld, int64_t N, int64_t T, int H, int D, const float* cos,
          const float* sin, bool inverse, cudaStream_t stream);

// ---- SwiGLU: gu [N, 2F] (dt) = (gate, up) per row ----
// h [N, F] (dt) = silu(gate) * up
void swiglu_fwd(DType dt, const void* gu, void* h, int64_t N, int64_t F, cudaStream_t stream);
// dgu [N, 2F] (dt) = (dh * up * s * (1 + g (1 - s)), dh * g * s), dh [N, F] f32
void swiglu_bwd(DType dt, const void* gu, const float* dh, void* dgu, int64_t N, int64_t F,
                cudaStream_t stream);

// ---- Embedding: W [V, C] f32, ids [N] int32 in [0, V) (checked by the caller) ----
void embedding_fwd(const int32_t* ids, const float* W, float* out, int64_t N, int64_t C,
                   cudaStream_t stream);
// dW [V, C] += scatter(dout [N, C]) with fp32 atomics (repeated ids accumulate; the order of
// the additions is not fixed).
void embedding_bwd(const int32_t* ids, const float* dout, float* dW, int64_t N, int64_t C,
                   cudaStream_t stream);

// ---- Fused softmax + cross-entropy over V (csrc/train/xent.h), one block per row ----
// z [N, V] (dt): logits in; with grad, overwritten by (softmax - onehot) * grad_scale.
// t [N] int32 (< 0: ignored -> loss 0, gradient 0), loss [N] f32.
void softmax_xent(DType dt, void* z, const int32_t* t, float* loss, int64_t N, int64_t V,
                  float grad_scale, bool grad, cudaStream_t stream);

// ---- Flash attention backward (FlashAttention-2, algorithm 2) ----
// Recomputes P = exp(scale q k^T - lse) from the forward's lse. Layout as csrc/train/attention.h:
// q/dq rows [B*T, ld] with H heads at column h*D from their base pointer, k/v/dk/dv with Hkv
// heads, o/do [B*T, ldo] with H heads; lse [B, H, T] f32. Causal, grouped-query (query head h
// reads kv head h / (H / Hkv)). dq, dk, dv are overwritten. D in {64, 128}.
struct AttnBwdParams {
    DType dt = DType::F32;  // q, k, v, o, do, dq, dk, dv
    const void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *dout = nullptr;
    const float* lse = nullptr;
    void *dq = nullptr, *dk = nullptr, *dv = nullptr;
    int B = 0, T = 0, H = 0, Hkv = 0, D = 0;
    int64_t ld = 0, ldo = 0;
    float scale = 0.f;
};
size_t attention_bwd_workspace(const AttnBwdParams& p);  // bytes: delta + fp32 dq accumulator
void attention_bwd(const AttnBwdParams& p, void* ws, cudaStream_t stream);

// ---- Optimizer (csrc/train/optim.h): PyTorch AdamW order of operations ----
struct AdamWArgs {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;  // 1 for the first update
    float grad_scale;
};
// p, g, m, v [n] f32; p_bf16 (may be null) receives bf16(p) after the update (the GEMM copy).
void adamw(float* p, const float* g, float* m, float* v, void* p_bf16, int64_t n,
           const AdamWArgs& a, cudaStream_t stream);
// *out (device double) = sum x^2; fixed blocks, partials added in order: deterministic.
size_t sum_squares_workspace();  // bytes
void sum_squares(const float* x, int64_t n, double* out, void* ws, cudaStream_t stream);
// y [n] (dt) = x [n] f32 (F32: a copy)
void cast_f32(DType dt, const float* x, void* y, int64_t n, cudaStream_t stream);

}  // namespace train
}  // namespace cuda
}  // namespace pylm
