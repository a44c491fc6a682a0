// Vector helpers shared by the AVX-512 attention translation units (attention_avx512.cpp,
// attention_rows_avx512.cpp). Include ONLY from *_avx512.cpp files: everything here is static
// inline (a private copy per translation unit, compiled with that ISA's flags).
//
// Cross-ISA determinism: the folds perform exactly the float operations of the canonical
// evaluation written out in attention_ref.cpp (the AVX2 and scalar folds do the same), so all
// ISAs return the same bits.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/vmath_avx512.h"

// GCC 12 flags the self-initialized "undefined" operand inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace pylm {
namespace avx512 {

// The canonical exp (flushing results below FLT_MIN to 0) / tanh of every ISA (vmath_avx512.h; scalar twins in vmath_ref.h).
static inline __m512 exp_ps(__m512 x) { return vm_exp_ftz(x); }
static inline __m512 tanh_ps(__m512 x) { return vm_tanh(x); }

static inline __mmask16 tail_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u));
}

static inline float hmax(__m512 v) {
    __m256 h = _mm256_max_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

// The canonical 16-lane sum tree (vmath_ref.h).
static inline float hsum(__m512 v) { return vm_hsum(v); }

// The single-row fold over rows [ra, rb) (attention_rows_avx512.cpp): for decode-sized blocks.
void attn_fold_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk, const float* v,
                    int64_t ldv, int64_t j0, int64_t n, AttnState& st);

}  // namespace avx512
}  // namespace pylm
