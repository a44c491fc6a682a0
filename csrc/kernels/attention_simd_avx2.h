// Vector helpers shared by the AVX2 + FMA attention translation units (attention_avx2.cpp,
// attention_rows_avx2.cpp). Include ONLY from *_avx2.cpp files: everything here is static
// inline (a private copy per translation unit, compiled with that ISA's flags).
//
// Cross-ISA determinism: the folds perform exactly the float operations of the canonical
// evaluation written out in attention_ref.cpp (AVX-512's natural structure: 16 virtual lanes
// are two __m256 here), so all ISAs return the same bits.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/vmath_avx2.h"

namespace pylm {
namespace avx2 {

// Lanes [0, n) set (n clamped to 0..8), for maskload / maskstore.
static inline __m256i lane_mask(int64_t n) {
    const int c = n <= 0 ? 0 : (n >= 8 ? 8 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The first n (clamped to 0..8) floats at p; the rest of the vector is 0.
static inline __m256 load_part(const float* p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(n));
}

// The canonical exp (flushing results below FLT_MIN to 0) / tanh of every ISA (vmath_avx2.h; scalar twins in vmath_ref.h).
static inline __m256 exp_ps(__m256 x) { return vm_exp_ftz(x); }
static inline __m256 tanh_ps(__m256 x) { return vm_tanh(x); }

static inline float hmax(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

// The canonical 16-lane sum tree (vmath_ref.h) of lanes 0-7 in lo and 8-15 in hi.
static inline float hsum16(__m256 lo, __m256 hi) { return vm_hsum(_mm256_add_ps(lo, hi)); }

// The single-row fold over rows [ra, rb) (attention_rows_avx2.cpp): for decode-sized blocks.
void attn_fold_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk, const float* v,
                    int64_t ldv, int64_t j0, int64_t n, AttnState& st);

}  // namespace avx2
}  // namespace pylm
