// Row kernels of a transformer block: RMSNorm, rotary position embedding (RoPE), softmax.
//
// Each op exists as a scalar reference (nn_ref.cpp, the oracle and fallback), an AVX2+FMA
// variant (nn_avx2.cpp) and an AVX-512 variant (nn_avx512.cpp). The entry points in namespace
// pylm (nn.cpp) pick the active ISA and thread over rows (tokens for RoPE).
//
// References:
//   RMSNorm: Zhang & Sennrich 2019, y = x / sqrt(mean(x^2) + eps) * w. Gemma's GGUF files
//     already store (1 + w), so no offset is applied here.
//   RoPE: Su et al. 2021 (RoFormer); GGUF/llama.cpp layouts "normal" (LLAMA_ROPE_TYPE_NORM=0,
//     rotate adjacent pairs (x[2i], x[2i+1])) and "neox" (LLAMA_ROPE_TYPE_NEOX=2, rotate
//     (x[i], x[i + n_dims/2])); theta_i = pos * base^(-2i/n_dims) * freq_scale.
//   Softmax: the max-subtracted form; y = exp(s*x - max(s*x)) / sum(...).
//
// Shapes: R rows of C channels; RoPE x is (T, H, D) with T tokens, H heads, head dim D.
#pragma once
#include <cstdint>

namespace pylm {

constexpr int kRopeNormal = 0;  // llama.cpp LLAMA_ROPE_TYPE_NORM
constexpr int kRopeNeox = 2;    // llama.cpp LLAMA_ROPE_TYPE_NEOX

// ---- dispatched entry points (nn.cpp); nthreads <= 0 means the global default ----

// x, y: [R, C]; w: [C] or nullptr (no weight). y == x (in place) is allowed; otherwise the
// arrays must not overlap. C == 0 or R == 0 does nothing. The sum of squares accumulates in
// float within blocks of 512 and in double across blocks, so |x| must stay below ~1e19 (x^2
// finite in float).
void rmsnorm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps,
                 int nthreads = 0);

// x: [T, H, D], rotated in place; pos: [T]. Rotates the first n_dims channels of every head
// (n_dims even, 0 < n_dims <= D); channels [n_dims, D) pass through. mode: kRopeNormal or
// kRopeNeox. The angles are computed in double (pos * base^(-2i/n_dims) * freq_scale, then
// cos/sin in double, rounded once to float), so they stay accurate for positions far beyond
// 32k, unlike ggml's float powf recurrence. The tables of a position depend on that position
// only (exact cos/sin at multiples of 64, rotated in double by the exact offset angle; see
// nn.cpp), never on the batch, threads or ISA. Throws std::invalid_argument on a bad
// n_dims/mode.
void rope_f32(float* x, const int32_t* pos, int64_t T, int H, int D, int n_dims, float base,
              float freq_scale, int mode, int nthreads = 0);

// rope_f32 in two steps, for callers that rotate several tensors at the same positions (the
// engine: q and k of every layer): rope_tables fills cos2/sin2 [T, n_dims] (the per-token tables
// of rope_rotate_f32 below, neox using the first n_dims/2 of each row); rope_apply_f32 rotates
// x [T, H, D] with them. rope_f32 == rope_tables + rope_apply_f32, bit for bit.
void rope_tables(const int32_t* pos, int64_t T, int n_dims, float base, float freq_scale, int mode,
                 float* cos2, float* sin2, int nthreads = 0);
void rope_apply_f32(float* x, const float* cos2, const float* sin2, int64_t T, int H, int D,
                    int n_dims, int mode, int nthreads = 0);

// x, y: [R, C]; y[r] = softmax(scale * x[r]). y == x allowed. -inf entries (masks) get 0;
// a row that is entirely -inf gives all zeros (not NaN); NaN inputs make the row NaN.
void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale = 1.0f,
                 int nthreads = 0);

// ---- per-ISA kernels (same contracts, single-threaded) ----
//
// Cross-ISA determinism: all three variants perform the same float operations in the same
// order (the canonical order is written out in nn_ref.cpp), so their outputs are bit-identical.
//
// rope_rotate_f32 rotates one token, x: [H, D], with per-token tables that rope_f32 builds:
//   mode normal: cos2[n_dims] = (c0, c0, c1, c1, ...), sin2[n_dims] = (-s0, s0, -s1, s1, ...)
//   mode neox:   cos2[n_dims/2] = (c0, c1, ...),       sin2[n_dims/2] = (s0, s1, ...)
// so that the normal layout is y = x * cos2 + swap_pairs(x) * sin2 (one FMA per vector).
#define PYLM_NN_DECLARE_ISA(ns)                                                                    \
    namespace ns {                                                                                 \
    void rmsnorm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps);   \
    void rope_rotate_f32(float* x, const float* cos2, const float* sin2, int H, int D, int n_dims, \
                         int mode);                                                                \
    void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale);                 \
    }

PYLM_NN_DECLARE_ISA(ref)
PYLM_NN_DECLARE_ISA(avx2)
PYLM_NN_DECLARE_ISA(avx512)
#undef PYLM_NN_DECLARE_ISA

}  // namespace pylm
