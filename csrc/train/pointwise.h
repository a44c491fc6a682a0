// Element- and row-wise training ops with their backward passes: SwiGLU, RoPE (adjacent pairs),
// embedding gather / scatter-add, residual add, and a squared-error loss.
//
//   SwiGLU  h = silu(g) * u, silu(g) = g * s, s = sigmoid(g)
//           dg = dh * u * s * (1 + g * (1 - s)),  du = dh * g * s
//   RoPE    llama.cpp's "normal" layout: pairs (x[2i], x[2i+1]) of every head rotate by
//           theta_i(pos): y0 = x0 c - x1 s, y1 = x0 s + x1 c. The map is orthogonal, so its
//           backward is the inverse rotation (s -> -s) applied to the gradient.
//   Embed   out[n] = W[ids[n]];  backward dW[ids[n]] += dout[n] (repeated ids accumulate)
//   Add     y = a + b (the residual stream; its backward is the identity on both inputs)
//   SqErr   L = sum (y - t)^2,  dy = 2 (y - t)
//
// Shapes: gu [N, 2F] holds gate then up for each row (one fused projection), h/dh [N, F];
// RoPE x is N rows of stride ld, each holding H heads of D channels at its start, row n at
// position n % T (B sequences of T tokens back to back), tables cos/sin [T, D/2].
#pragma once
#include <cstdint>

namespace pylm {
namespace train {

void swiglu_fwd(const float* gu, float* h, int64_t N, int64_t F, int nthreads = 0);
// dgu [N, 2F] = (dgate, dup); overwritten.
void swiglu_bwd(const float* gu, const float* dh, float* dgu, int64_t N, int64_t F,
                int nthreads = 0);
// Rotates x in place (inverse: by -theta, the backward). D even.
void rope(float* x, int64_t ld, int64_t N, int64_t T, int H, int D, const float* cos,
          const float* sin, bool inverse, int nthreads = 0);
// ids [N] in [0, V) (checked by the caller), W [V, C], out [N, C].
void embedding_fwd(const int32_t* ids, const float* W, float* out, int64_t N, int64_t C,
                   int nthreads = 0);
// dW [V, C] += scatter(dout [N, C]). Threads own column blocks: no races, fixed order.
void embedding_bwd(const int32_t* ids, const float* dout, float* dW, int64_t N, int64_t C,
                   int nthreads = 0);
void add(const float* a, const float* b, float* y, int64_t n, int nthreads = 0);
// Returns sum((y - t)^2) (in double); dy [n] = 2 (y - t). Single-threaded (small by nature).
double sq_err(const float* y, const float* t, float* dy, int64_t n);

}  // namespace train

// ---- per-ISA kernels (single-threaded; the dispatchers split rows / columns / elements) ----
// rope_rows: rows [0, R) of x, row r at position pos0 + r.. wrapped by T; cos2/sin2 [T, D]
// are the interleaved tables (c0, c0, c1, c1, ...) and (-s0, s0, -s1, s1, ...) so that
// y = x * cos2 + swap_pairs(x) * sin2. embedding_bwd_cols: columns [c0, c1) only.
#define PYLM_TRAIN_POINTWISE_DECLARE(ns)                                                   \
    namespace ns {                                                                         \
    namespace train {                                                                      \
    void swiglu_fwd(const float* gu, float* h, int64_t N, int64_t F);                      \
    void swiglu_bwd(const float* gu, const float* dh, float* dgu, int64_t N, int64_t F);   \
    void rope_rows(float* x, int64_t ld, int64_t R, int64_t pos0, int64_t T, int H, int D, \
                   const float* cos2, const float* sin2);                                  \
    void embedding_bwd_cols(const int32_t* ids, const float* dout, float* dW, int64_t N,   \
                            int64_t C, int64_t c0, int64_t c1);                            \
    void add(const float* a, const float* b, float* y, int64_t n);                         \
    }                                                                                      \
    }
PYLM_TRAIN_POINTWISE_DECLARE(ref)
PYLM_TRAIN_POINTWISE_DECLARE(avx2)
PYLM_TRAIN_POINTWISE_DECLARE(avx512)
#undef PYLM_TRAIN_POINTWISE_DECLARE

}  // namespace pylm
