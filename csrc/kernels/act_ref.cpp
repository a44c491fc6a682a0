// Scalar reference activations: the fallback on CPUs without AVX2, and the canonical
// evaluation written out one lane at a time. It performs exactly the float operations of the
// SIMD variants (act_avx2.cpp / act_avx512.cpp, vmath_ref.h for exp/tanh/erfc), so every ISA
// returns the same bits. Contracts and formulas: act.h. Shapes: every array is [n].
#include "kernels/act.h"
#include "kernels/vmath_ref.h"

namespace pylm {
namespace ref {

namespace {

using vref::vr_erfc;
using vref::vr_exp;
using vref::vr_tanh;

// -inf -> -FLT_MAX so that x / (1 + exp(-x)) gives -0 instead of -inf/inf; NaN kept
// (the SIMD max(-FLT_MAX, x) returns its 2nd operand for NaN).
inline float clamp_neg_inf(float x) { return -3.40282347e38f > x ? -3.40282347e38f : x; }

inline float silu(float x) {
    x = clamp_neg_inf(x);
    return x / (1.0f + vr_exp(0.0f - x));
}

// x / (1 + exp(u)), u = -2 sqrt(2/pi) (x + 0.044715 x^3) = x (k0 + k1 x^2).
inline float gelu(float x) {
    x = clamp_neg_inf(x);
    const float k0 = -1.59576912160573071176f;
    const float k1 = -1.59576912160573071176f * 0.044715f;
    const float u = x * std::fmaf(k1, x * x, k0);
    return x / (1.0f + vr_exp(u));
}

// 0.5 x erfc(-x / sqrt(2)).
inline float gelu_erf(float x) {
    x = clamp_neg_inf(x);
    const float u = x * -0.70710678118654752440f;
    return (0.5f * x) * vr_erfc(u);
}

}  // namespace

void exp_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = vr_exp(x[i]);
}

void tanh_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = vr_tanh(x[i]);
}

void silu_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = silu(x[i]);
}

void gelu_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu(x[i]);
}

void gelu_erf_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu_erf(x[i]);
}

void swiglu_f32(const float* gate, const float* up, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = silu(gate[i]) * up[i];
}

void geglu_f32(const float* gate, const float* up, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu(gate[i]) * up[i];
}

}  // namespace ref
}  // namespace pylm
