// Vectorized float math for AVX-512 translation units (16 lanes): exp, tanh, erfc, tail masks
// and horizontal reductions. The 16-lane twin of vmath_avx2.h; see there for the methods
// (Cephes expf / tanhf, Numerical Recipes erfcc) and their accuracy.
//
// NOTE: include ONLY from *_avx512.cpp files; everything is `static inline` (internal linkage).
// Differences from the AVX2 version: 2^n is applied with VSCALEFPS, which rounds once and
// overflows / underflows (through the denormals) exactly; tails use native k-masks.
#pragma once
#if !defined(__AVX512F__) || !defined(__AVX512DQ__)
#error "vmath_avx512.h needs -mavx512f -mavx512dq: include it only from *_avx512.cpp files"
#endif
// GCC 12 warns -Wmaybe-uninitialized inside its own avx512fintrin.h (the `__Y = __Y` idiom of
// _mm512_undefined_ps) wherever those intrinsics are inlined; silence it for AVX-512 TUs.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

namespace pylm {
namespace avx512 {

// Lanes [0, n) set, n in [0, 16].
static inline __mmask16 vm_tail_mask(int64_t n) {
    return static_cast<__mmask16>((1u << static_cast<unsigned>(n)) - 1u);
}

// Horizontal sum / max. NOTE: not _mm512_reduce_*_ps, which trips GCC 12's
// -Wmaybe-uninitialized inside its own header.
static inline float vm_hsum(__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float vm_hmax(__m512 v) {
    const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m512 vm_exp(__m512 x) {
    // NaN-preserving clamps: MINPS/MAXPS return the 2nd operand when either is NaN.
    x = _mm512_min_ps(_mm512_set1_ps(100.0f), x);
    x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// exp(x) with results below FLT_MIN flushed to 0: x < -87.33654475 (incl. -inf) gives exactly 0,
// otherwise vm_exp(x). The input is clamped first, so masked -inf lanes never underflow: an
// underflowing VSCALEFPS / multiply costs a microcode assist (attention's masked scores).
static inline __m512 vm_exp_ftz(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654475f);
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), vm_exp(_mm512_max_ps(lo, x)));
}

static inline __m512 vm_tanh(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 ax = _mm512_abs_ps(x);
    // |x| >= 0.625: sign(x) (1 - 2 / (exp(2|x|) + 1)).
    const __m512 e = vm_exp(_mm512_add_ps(ax, ax));
    __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    big = _mm512_or_ps(big, _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
    // |x| < 0.625: x + x^3 P(x^2).
    const __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    const __mmask16 is_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(is_small, big, small);
}

static inline __m512 vm_erfc(__m512 u) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 z = _mm512_abs_ps(u);
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, one));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    const __m512 r = _mm512_mul_ps(t, vm_exp(_mm512_fnmadd_ps(z, z, p)));
    const __mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_sub_ps(r, neg, _mm512_set1_ps(2.0f), r);
}

}  // namespace avx512
}  // namespace pylm
