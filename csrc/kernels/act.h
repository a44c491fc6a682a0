// Elementwise activations: exp, tanh, SiLU, GELU (tanh approximation and exact erf form),
// and the gated forms SwiGLU = silu(gate) * up (llama, SmolLM) and GeGLU = gelu(gate) * up
// (Gemma, with the tanh GELU as HF `gelu_pytorch_tanh` and ggml's gelu).
//
// Each op exists as a scalar reference (act_ref.cpp), AVX2+FMA (act_avx2.cpp) and AVX-512
// (act_avx512.cpp) variants; the vectorized exp/tanh/erfc live in vmath_avx2.h / vmath_avx512.h
// and their scalar twins in vmath_ref.h. All three perform the same float operations in the same
// order (one polynomial, FMA where the SIMD code fuses), so their outputs are bit-identical.
// The entry points in namespace pylm (act.cpp) dispatch on the active ISA and split large
// arrays into chunks of 64K elements across threads.
//
// Formulas (all exact identities of the textbook forms, chosen to avoid cancellation):
//   silu(x)      = x / (1 + exp(-x))
//   gelu(x)      = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//                = x / (1 + exp(-2 sqrt(2/pi) (x + 0.044715 x^3)))  <- computed this way: no
//                  1 + tanh cancellation in the negative tail
//   gelu_erf(x)  = 0.5 x erfc(-x / sqrt(2))
// Limits: silu/gelu/gelu_erf(-inf) = -0, (+inf) = +inf; NaN propagates. exp saturates to +inf
// for x > ~88.72 and to 0 for x < ~-103.9 (denormal results in between), tanh(+-inf) = +-1.
//
// Shapes: every array is [n], contiguous; y may equal x (or gate/up) for in-place use.
#pragma once
#include <cstdint>

namespace pylm {

// ---- dispatched entry points (act.cpp); nthreads <= 0 means the global default ----
void exp_f32(const float* x, float* y, int64_t n, int nthreads = 0);
void tanh_f32(const float* x, float* y, int64_t n, int nthreads = 0);
void silu_f32(const float* x, float* y, int64_t n, int nthreads = 0);
void gelu_f32(const float* x, float* y, int64_t n, int nthreads = 0);      // tanh approximation
void gelu_erf_f32(const float* x, float* y, int64_t n, int nthreads = 0);  // exact (erf)
void swiglu_f32(const float* gate, const float* up, float* y, int64_t n, int nthreads = 0);
void geglu_f32(const float* gate, const float* up, float* y, int64_t n, int nthreads = 0);

// ---- per-ISA kernels (same contracts, single-threaded) ----
#define PYLM_ACT_DECLARE_ISA(ns)                                              \
    namespace ns {                                                            \
    void exp_f32(const float* x, float* y, int64_t n);                        \
    void tanh_f32(const float* x, float* y, int64_t n);                       \
    void silu_f32(const float* x, float* y, int64_t n);                       \
    void gelu_f32(const float* x, float* y, int64_t n);                       \
    void gelu_erf_f32(const float* x, float* y, int64_t n);                   \
    void swiglu_f32(const float* gate, const float* up, float* y, int64_t n); \
    void geglu_f32(const float* gate, const float* up, float* y, int64_t n);  \
    }

PYLM_ACT_DECLARE_ISA(ref)
PYLM_ACT_DECLARE_ISA(avx2)
PYLM_ACT_DECLARE_ISA(avx512)
#undef PYLM_ACT_DECLARE_ISA

}  // namespace pylm
