// The GPU engine's own fused kernels (owner: cuda/engine/). They fuse what sits between the
// projections and attention, and between layers, so a decode step is ~10 launches per layer:
//
//   qkv_post:     (+bias) -> QK-norm -> RoPE on q and k; k and v written into the paged cache
//   add_rmsnorm:  x += post_norm(o + bias); h = rmsnorm(x) * w   (residual + next layer's norm)
//   softcap:      y = cap * tanh(y / cap)
//   gather_kv:    one sequence's cached K/V rows -> contiguous f32 (prefill via flash attention)
//
// Math is fp32 (RoPE angles in fp64, as the CPU engine computes them); the cache is F16 or F32.
// Shapes: N token rows, C channels, Hq/Hkv heads, D head dim, kv_dim = Hkv * D.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {

struct QkvPostParams {
    const float* q = nullptr;       // [N, ldq], head h at q + h*D
    const float* k = nullptr;       // [N, ldk]
    const float* v = nullptr;       // [N, ldv]
    int64_t ldq = 0, ldk = 0, ldv = 0;
    const float* bq = nullptr;      // optional [Hq*D]
    const float* bk = nullptr;      // optional [kv_dim]
    const float* bv = nullptr;      // optional [kv_dim]
    const float* q_norm = nullptr;  // optional [D] (RMSNorm per head)
    const float* k_norm = nullptr;  // optional [D]
    float eps = 1e-6f;
    const int32_t* pos = nullptr;   // [N] token positions (RoPE)
    const int32_t* slot = nullptr;  // [N] cache slot = block * block_size + offset
    float* q_out = nullptr;         // [N, Hq, D] contiguous
    void* k_cache = nullptr;        // [n_slots, Hkv, D] of kv_dtype (one layer)
    void* v_cache = nullptr;        // [n_slots, Hkv, D]
    DType kv_dtype = DType::F16;    // F16 or F32
    int N = 0, Hq = 0, Hkv = 0, D = 0;
    int rot_dim = 0;                // rotated dims per head, even, <= D
    bool neox = false;              // pairs (i, i + rot/2) instead of (2i, 2i+1)
    float rope_base = 10000.f, freq_scale = 1.f;
};
void qkv_post(const QkvPostParams& p, cudaStream_t stream);

// For i in [0, R): r = rows ? rows[i] : i.
//   if o:  t = o[r] (+ bias); if post_w: t = rmsnorm(t) * post_w; x[r] += t
//   h[i] = rmsnorm(x[r]) * w
// x, o: [*, C]; h: [R, C]; bias, post_w, w: [C]. rows must not repeat.
void add_rmsnorm(float* x, const float* o, const float* bias, const float* post_w, const float* w,
                 float* h, const int32_t* rows, int64_t R, int64_t C, float eps,
                 cudaStream_t stream);

// y[n] = cap * tanh(y[n] / cap), in place.
void softcap(float* y, int64_t n, float cap, cudaStream_t stream);

// k_out/v_out[t, :] = cache[slot(t), :] (as f32) for t in [0, T), slot(t) =
// table[t / block_size] * block_size + t % block_size. table: device int32 [ceil(T/block_size)].
void gather_kv(DType kv_dtype, const void* k_cache, const void* v_cache, const int32_t* table,
               int block_size, int64_t T, int64_t kv_dim, float* k_out, float* v_out,
               cudaStream_t stream);

}  // namespace cuda
}  // namespace pylm
