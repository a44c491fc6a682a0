// The 16-lane twin of simd_avx2.h (see there): the same names over __m512 and k-masks.
//
// NOTE: include ONLY from *_avx512.cpp files, inside nothing (it opens pylm::avx512 itself).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/vmath_avx512.h"

namespace pylm {
namespace avx512 {

typedef __m512 vf;
typedef __mmask16 vmask;
static constexpr int VW = 16;

static inline vf vf_zero() { return _mm512_setzero_ps(); }
static inline vf vf_set1(float x) { return _mm512_set1_ps(x); }
static inline vf vf_load(const float* p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float* p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm512_sqrt_ps(a); }
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
static inline vf vf_fnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
static inline vf vf_exp(vf x) { return vm_exp(x); }
// (v0, v1, v2, v3, ...) -> (v1, v0, v3, v2, ...): adjacent pairs swapped (RoPE).
static inline vf vf_swap_pairs(vf v) { return _mm512_permute_ps(v, 0xB1); }
static inline float vf_hsum(vf v) { return vm_hsum(v); }
static inline float vf_hmax(vf v) { return vm_hmax(v); }

static inline vmask vf_tail(int64_t n) { return vm_tail_mask(n); }
static inline vf vf_maskload(const float* p, vmask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline vf vf_maskload_fill(const float* p, vmask m, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p);
}
// Lanes outside the mask set to 0.
static inline vf vf_keep(vf v, vmask m) { return _mm512_maskz_mov_ps(m, v); }
static inline void vf_maskstore(float* p, vmask m, vf v) { _mm512_mask_storeu_ps(p, m, v); }
static inline vf vf_iota() {
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
static inline vf vf_select_gt(vf a, vf b, vf x, float fill) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), x, _mm512_set1_ps(fill));
}

}  // namespace avx512
}  // namespace pylm
