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

// dst[c * ldd + r] = src[r * lds + c] for an 8 x 8 tile (AVX instructions, valid in both the
// AVX2 and the AVX-512 translation units): the classic unpack / shuffle / lane-permute network.
static inline void tr8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
    const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds);
    const __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
    const __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
    const __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

}  // namespace avx2
}  // namespace pylm
