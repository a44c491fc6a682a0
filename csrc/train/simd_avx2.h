// An 8-lane float vector vocabulary for the training kernels' SIMD bodies (*_simd.inc).
//
// The training kernels are written once against these names (vf, VW, vf_load, vf_fma, ...) and
// compiled twice: <op>_avx2.cpp includes this header, <op>_avx512.cpp includes simd_avx512.h,
// then both include the same <op>_simd.inc inside their own namespace. One source, no drift
// between ISAs, and every helper is `static inline` (internal linkage), so no AVX-512 copy of a
// helper can leak into AVX2 code at link time.
//
// NOTE: include ONLY from *_avx2.cpp files, inside nothing (it opens pylm::avx2 itself).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/vmath_avx2.h"

namespace pylm {
namespace avx2 {

typedef __m256 vf;
typedef __m256i vmask;
static constexpr int VW = 8;

static inline vf vf_zero() { return _mm256_setzero_ps(); }
static inline vf vf_set1(float x) { return _mm256_set1_ps(x); }
static inline vf vf_load(const float* p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float* p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm256_sqrt_ps(a); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }    // a*b + c
static inline vf vf_fnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a*b
static inline vf vf_exp(vf x) { return vm_exp(x); }
// (v0, v1, v2, v3, ...) -> (v1, v0, v3, v2, ...): adjacent pairs swapped (RoPE).
static inline vf vf_swap_pairs(vf v) { return _mm256_permute_ps(v, 0xB1); }
static inline float vf_hsum(vf v) { return vm_hsum(v); }
static inline float vf_hmax(vf v) { return vm_hmax(v); }

// Lanes [0, n) of a tail, n in [0, VW].
static inline vmask vf_tail(int64_t n) { return vm_tail_mask(n); }
// Masked load: lanes outside the mask read as 0 (vf_maskload) or as `fill`.
static inline vf vf_maskload(const float* p, vmask m) { return _mm256_maskload_ps(p, m); }
static inline vf vf_maskload_fill(const float* p, vmask m, float fill) {
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
// Lanes outside the mask set to 0.
static inline vf vf_keep(vf v, vmask m) { return _mm256_and_ps(v, _mm256_castsi256_ps(m)); }
static inline void vf_maskstore(float* p, vmask m, vf v) { _mm256_maskstore_ps(p, m, v); }
// Lane i = i (as float): for causal masks inside a vector of keys.
static inline vf vf_iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
// Lanes where a > b replaced by `fill`.
static inline vf vf_select_gt(vf a, vf b, vf x, float fill) {
    return _mm256_blendv_ps(x, _mm256_set1_ps(fill), _mm256_cmp_ps(a, b, _CMP_GT_OQ));
}

}  // namespace avx2
}  // namespace pylm
