// Scalar reference activations: the oracle for the SIMD variants and the fallback on CPUs
// without AVX2. Contracts and formulas: act.h. Shapes: every array is [n].
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "kernels/act.h"

namespace pylm {
namespace ref {

namespace {

constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluCoef = 0.044715f;
constexpr float kSqrtHalf = 0.70710678118654752440f;

// NOTE: -inf is clamped to -FLT_MAX so that x / (1 + exp(-x)) gives -0 instead of -inf/inf.
// std::max(NaN, c) returns the NaN (its first argument), so NaN still propagates.
inline float clamp_neg_inf(float x) { return std::max(x, -FLT_MAX); }

inline float silu(float x) {
    x = clamp_neg_inf(x);
    return x / (1.0f + std::exp(-x));
}

// 0.5 x (1 + tanh(y)) == x / (1 + exp(-2y)), y = sqrt(2/pi) (x + 0.044715 x^3).
inline float gelu(float x) {
    x = clamp_neg_inf(x);
    const float y = kSqrt2OverPi * x * (1.0f + kGeluCoef * x * x);
    return x / (1.0f + std::exp(-2.0f * y));
}

inline float gelu_erf(float x) {
    x = clamp_neg_inf(x);
    return 0.5f * x * std::erfc(-x * kSqrtHalf);
}

}  // namespace

void exp_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

void tanh_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
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
