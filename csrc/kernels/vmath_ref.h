// Scalar twins of vmath_avx2.h / vmath_avx512.h: the SAME float operations in the same order,
// one lane at a time, so the scalar kernels give bit-identical results to the SIMD ones.
//
// Cross-ISA determinism contract (every ISA computes one canonical evaluation):
//   * a fused multiply-add in SIMD is std::fmaf here (correctly rounded: identical bits);
//     a multiply then an add in SIMD is a multiply then an add here (-ffp-contract=off);
//   * _mm*_min_ps(a, x) is `a < x ? a : x`, _mm*_max_ps(a, x) is `a > x ? a : x` (NaN -> x);
//   * rounding to an integer is round-half-even (std::nearbyint in the default mode);
//   * horizontal sums of 16 lanes use ONE fixed tree (vr_hsum16), the one vm_hsum (AVX-512)
//     and vm_hsum(lo + hi) (AVX2, lanes 0-7 in lo, 8-15 in hi) compute:
//       v[i] += v[i + 8] (i < 8), v[i] += v[i + 4] (i < 4), v[i] += v[i + 2] (i < 2), v[0] + v[1].
// NaN inputs give NaN (payloads may differ between ISAs; numpy's array_equal-style checks
// treat all NaNs alike).
//
// NOTE: include ONLY from baseline translation units (*_ref.cpp, dispatchers). Everything here
// is `static inline`.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace pylm {
namespace vref {

static inline float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// Cephes expf, as vm_exp: clamp to [-110, 100], n = rint(x log2 e), r = x - n ln2 (two FMAs),
// exp(r) = 1 + r + r^2 P(r), then 2^n as 2^(n>>1) * 2^(n - (n>>1)) (two exact-power multiplies:
// one rounding, the same as AVX-512's VSCALEFPS).
static inline float vr_exp(float x) {
    x = 100.0f < x ? 100.0f : x;
    x = -110.0f > x ? -110.0f : x;
    if (x != x) return x;
    const float n = std::nearbyint(x * 1.44269504088896341f);
    float r = std::fmaf(-n, 0.693359375f, x);
    r = std::fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = std::fmaf(p, r, 1.3981999507e-3f);
    p = std::fmaf(p, r, 8.3334519073e-3f);
    p = std::fmaf(p, r, 4.1665795894e-2f);
    p = std::fmaf(p, r, 1.6666665459e-1f);
    p = std::fmaf(p, r, 5.0000001201e-1f);
    p = std::fmaf(p, r * r, r);
    p = p + 1.0f;
    const int32_t ni = static_cast<int32_t>(n);
    const int32_t n1 = ni >> 1;  // floor(n / 2), as _mm256_srai_epi32
    const int32_t n2 = ni - n1;
    const float s1 = bits_to_float(static_cast<uint32_t>(n1 + 127) << 23);
    const float s2 = bits_to_float(static_cast<uint32_t>(n2 + 127) << 23);
    return (p * s1) * s2;
}

// vm_exp_ftz: x < -87.33654475 (incl. -inf) gives exactly 0, otherwise vr_exp(x).
static inline float vr_exp_ftz(float x) { return x < -87.33654475f ? 0.0f : vr_exp(x); }

// Cephes tanhf, as vm_tanh: |x| < 0.625: x + x^3 P(x^2); else sign(x) (1 - 2 / (exp(2|x|) + 1)).
static inline float vr_tanh(float x) {
    const float ax = std::fabs(x);
    if (ax < 0.625f) {
        const float z = x * x;
        float p = -5.70498872745e-3f;
        p = std::fmaf(p, z, 2.06390887954e-2f);
        p = std::fmaf(p, z, -5.37397155531e-2f);
        p = std::fmaf(p, z, 1.33314422036e-1f);
        p = std::fmaf(p, z, -3.33332819422e-1f);
        return std::fmaf(p * z, x, x);
    }
    const float e = vr_exp(ax + ax);
    const float big = 1.0f - 2.0f / (e + 1.0f);  // >= 0 (or NaN)
    return std::signbit(x) ? -big : big;
}

// Numerical Recipes erfcc, as vm_erfc.
static inline float vr_erfc(float u) {
    const float z = std::fabs(u);
    const float t = 1.0f / std::fmaf(0.5f, z, 1.0f);
    float p = 0.17087277f;
    p = std::fmaf(p, t, -0.82215223f);
    p = std::fmaf(p, t, 1.48851587f);
    p = std::fmaf(p, t, -1.13520398f);
    p = std::fmaf(p, t, 0.27886807f);
    p = std::fmaf(p, t, -0.18628806f);
    p = std::fmaf(p, t, 0.09678418f);
    p = std::fmaf(p, t, 0.37409196f);
    p = std::fmaf(p, t, 1.00002368f);
    p = std::fmaf(p, t, -1.26551223f);
    const float r = t * vr_exp(std::fmaf(-z, z, p));
    return u < 0.0f ? 2.0f - r : r;
}

// The canonical 16-lane sum tree (see the top of this file). v is not modified.
static inline float vr_hsum16(const float* v) {
    float a[8], b[4];
    for (int i = 0; i < 8; ++i) a[i] = v[i] + v[i + 8];
    for (int i = 0; i < 4; ++i) b[i] = a[i] + a[i + 4];
    const float c0 = b[0] + b[2], c1 = b[1] + b[3];
    return c0 + c1;
}

}  // namespace vref
}  // namespace pylm
