// Vectorized float math for AVX2+FMA translation units (8 lanes): exp, tanh, erfc, tail masks
// and horizontal reductions.
//
// NOTE: include ONLY from *_avx2.cpp files. Everything here is `static inline` (internal
// linkage): each including TU owns its copy, so the linker can never hand AVX2 code to a
// baseline caller. vmath_avx512.h is the 16-lane twin and vmath_ref.h the scalar one; keep the
// three in step (the same float operations: cross-ISA bit-identical results).
//
// exp:  Cephes expf. n = round(x / ln2), r = x - n*ln2 (ln2 split in two parts, |r| <= ln2/2),
//       exp(r) = 1 + r + r^2 P(r) with the degree-5 Cephes polynomial, then 2^n applied as two
//       exponent-field multiplies 2^(n/2) * 2^(n - n/2) so that results overflow to +inf and
//       underflow through the denormals to 0 with one rounding. Measured max relative error
//       ~1.5e-7 (about 2 ulp) on [-87, 88]. Inputs are clamped to [-110, 100] first (the result
//       is already 0 / +inf there); the clamps keep NaN (MINPS/MAXPS return their 2nd operand
//       when either is NaN, so the input goes second).
// tanh: Cephes tanhf: odd polynomial for |x| < 0.625, else sign(x) (1 - 2 / (exp(2|x|) + 1)).
// erfc: Numerical Recipes `erfcc` (Chebyshev fit, fractional error < 1.2e-7 for all z >= 0):
//       erfc(z) = t exp(-z^2 - 1.26551223 + t P(t)), t = 1 / (1 + z/2); erfc(-z) = 2 - erfc(z).
#pragma once
#if !defined(__AVX2__) || !defined(__FMA__)
#error "vmath_avx2.h needs -mavx2 -mfma: include it only from *_avx2.cpp files"
#endif
#include <immintrin.h>

#include <cstdint>

namespace pylm {
namespace avx2 {

// Lanes [0, n) set, n in [0, 8]: for _mm256_maskload_ps / _mm256_maskstore_ps on tails.
static inline __m256i vm_tail_mask(int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane);
}

static inline float vm_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float vm_hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 vm_exp(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(100.0f), x);
    x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    // 2^n as 2^n1 * 2^n2, n1 = floor(n/2): both stay normal for n in [-159, 145].
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// exp(x) with results below FLT_MIN flushed to 0: x < -87.33654475 (incl. -inf) gives exactly 0,
// otherwise vm_exp(x). The input is clamped first, so masked -inf lanes never underflow (an
// underflowing multiply costs a microcode assist).
static inline __m256 vm_exp_ftz(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654475f);
    const __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    return _mm256_andnot_ps(tiny, vm_exp(_mm256_max_ps(lo, x)));
}

static inline __m256 vm_tanh(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 ax = _mm256_andnot_ps(sign, x);
    // |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1), sign restored.
    const __m256 e = vm_exp(_mm256_add_ps(ax, ax));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(x, sign));
    // |x| < 0.625: x + x^3 P(x^2).
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm256_blendv_ps(big, small, is_small);
}

static inline __m256 vm_erfc(__m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 z = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    const __m256 r = _mm256_mul_ps(t, vm_exp(_mm256_fnmadd_ps(z, z, p)));
    const __m256 neg = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(r, _mm256_sub_ps(_mm256_set1_ps(2.0f), r), neg);
}

}  // namespace avx2
}  // namespace pylm
