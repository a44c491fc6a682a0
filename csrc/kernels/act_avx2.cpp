// AVX2+FMA activations, 8 lanes; tails go through masked loads/stores (no scalar loop).
// Contracts and formulas: act.h; vectorized exp/tanh/erfc: vmath_avx2.h.
#include <immintrin.h>

#include "kernels/act.h"
#include "kernels/vmath_avx2.h"

namespace pylm {
namespace avx2 {

namespace {

// -inf -> -FLT_MAX so that the x / (1 + exp(...)) forms give -0; NaN kept (2nd operand).
inline __m256 clamp_neg_inf(__m256 x) { return _mm256_max_ps(_mm256_set1_ps(-3.40282347e38f), x); }

inline __m256 silu(__m256 x) {
    x = clamp_neg_inf(x);
    const __m256 e = vm_exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// x / (1 + exp(u)), u = -2 sqrt(2/pi) (x + 0.044715 x^3) = x (k0 + k1 x^2).
inline __m256 gelu(__m256 x) {
    x = clamp_neg_inf(x);
    const __m256 k0 = _mm256_set1_ps(-1.59576912160573071176f);
    const __m256 k1 = _mm256_set1_ps(-1.59576912160573071176f * 0.044715f);
    const __m256 u = _mm256_mul_ps(x, _mm256_fmadd_ps(k1, _mm256_mul_ps(x, x), k0));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), vm_exp(u)));
}

// 0.5 x erfc(-x / sqrt(2)).
inline __m256 gelu_erf(__m256 x) {
    x = clamp_neg_inf(x);
    const __m256 u = _mm256_mul_ps(x, _mm256_set1_ps(-0.70710678118654752440f));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), vm_erfc(u));
}

// y[i] = f(x[i]) over [0, n).
template <class F>
inline void map1(const float* x, float* y, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
    if (i < n) {
        const __m256i m = vm_tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
    }
}

// y[i] = f(a[i]) * b[i] over [0, n).
template <class F>
inline void map2(const float* a, const float* b, float* y, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(f(_mm256_loadu_ps(a + i)), _mm256_loadu_ps(b + i)));
    if (i < n) {
        const __m256i m = vm_tail_mask(n - i);
        const __m256 v =
            _mm256_mul_ps(f(_mm256_maskload_ps(a + i, m)), _mm256_maskload_ps(b + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
}

}  // namespace

void exp_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m256 v) { return vm_exp(v); });
}

void tanh_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m256 v) { return vm_tanh(v); });
}

void silu_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m256 v) { return silu(v); });
}

void gelu_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m256 v) { return gelu(v); });
}

void gelu_erf_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m256 v) { return gelu_erf(v); });
}

void swiglu_f32(const float* gate, const float* up, float* y, int64_t n) {
    map2(gate, up, y, n, [](__m256 v) { return silu(v); });
}

void geglu_f32(const float* gate, const float* up, float* y, int64_t n) {
    map2(gate, up, y, n, [](__m256 v) { return gelu(v); });
}

}  // namespace avx2
}  // namespace pylm
