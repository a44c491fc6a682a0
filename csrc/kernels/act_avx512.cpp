// AVX-512 activations, 16 lanes; tails go through k-masked loads/stores (no scalar loop).
// Contracts and formulas: act.h; vectorized exp/tanh/erfc: vmath_avx512.h.
#include "kernels/act.h"
#include "kernels/vmath_avx512.h"

namespace pylm {
namespace avx512 {

namespace {

// -inf -> -FLT_MAX so that the x / (1 + exp(...)) forms give -0; NaN kept (2nd operand).
inline __m512 clamp_neg_inf(__m512 x) { return _mm512_max_ps(_mm512_set1_ps(-3.40282347e38f), x); }

inline __m512 silu(__m512 x) {
    x = clamp_neg_inf(x);
    const __m512 e = vm_exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

// x / (1 + exp(u)), u = -2 sqrt(2/pi) (x + 0.044715 x^3) = x (k0 + k1 x^2).
inline __m512 gelu(__m512 x) {
    x = clamp_neg_inf(x);
    const __m512 k0 = _mm512_set1_ps(-1.59576912160573071176f);
    const __m512 k1 = _mm512_set1_ps(-1.59576912160573071176f * 0.044715f);
    const __m512 u = _mm512_mul_ps(x, _mm512_fmadd_ps(k1, _mm512_mul_ps(x, x), k0));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), vm_exp(u)));
}

// 0.5 x erfc(-x / sqrt(2)).
inline __m512 gelu_erf(__m512 x) {
    x = clamp_neg_inf(x);
    const __m512 u = _mm512_mul_ps(x, _mm512_set1_ps(-0.70710678118654752440f));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), vm_erfc(u));
}

// y[i] = f(x[i]) over [0, n).
template <class F>
inline void map1(const float* x, float* y, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = vm_tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

// y[i] = f(a[i]) * b[i] over [0, n).
template <class F>
inline void map2(const float* a, const float* b, float* y, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(f(_mm512_loadu_ps(a + i)), _mm512_loadu_ps(b + i)));
    if (i < n) {
        const __mmask16 m = vm_tail_mask(n - i);
        const __m512 v =
            _mm512_mul_ps(f(_mm512_maskz_loadu_ps(m, a + i)), _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

}  // namespace

void exp_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m512 v) { return vm_exp(v); });
}

void tanh_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m512 v) { return vm_tanh(v); });
}

void silu_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m512 v) { return silu(v); });
}

void gelu_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m512 v) { return gelu(v); });
}

void gelu_erf_f32(const float* x, float* y, int64_t n) {
    map1(x, y, n, [](__m512 v) { return gelu_erf(v); });
}

void swiglu_f32(const float* gate, const float* up, float* y, int64_t n) {
    map2(gate, up, y, n, [](__m512 v) { return silu(v); });
}

void geglu_f32(const float* gate, const float* up, float* y, int64_t n) {
    map2(gate, up, y, n, [](__m512 v) { return gelu(v); });
}

}  // namespace avx512
}  // namespace pylm
