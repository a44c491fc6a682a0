// AVX-512 probe loops: 512-bit loads for the read probe, twelve independent __m512 FMA chains
// for the peak (measures the frequency this core really runs 512-bit FMAs at). Contract: probe.h.
// GCC 12's own _mm512_cast*512_*256 / _mm512_extract*x4 trip -Wuninitialized (GCC bug 105593,
// fixed in 12.3): silence it for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "bench/probe.h"

namespace pylm {
namespace avx512 {

namespace {
inline float hsum(__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
}  // namespace

uint64_t read_sum(const uint8_t* p, int64_t nbytes) {
    // p is (nbytes,); 8 aligned 64-byte loads (512 bytes) per iteration into 4 accumulators.
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = 0; i + 512 <= nbytes; i += 512) {
        const __m512i* v = reinterpret_cast<const __m512i*>(p + i);
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(v + 0));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(v + 1));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(v + 2));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(v + 3));
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(v + 4));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(v + 5));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(v + 6));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(v + 7));
    }
    const __m512i s = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
    const __m256i q = _mm256_add_epi64(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return uint64_t(_mm_cvtsi128_si64(h)) + uint64_t(_mm_extract_epi64(h, 1));
}

static const int kChains = 12;

float fma_chains(int64_t iters, float seed) {
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    __m512 x0 = _mm512_set1_ps(seed), x1 = _mm512_add_ps(x0, b), x2 = _mm512_add_ps(x1, b);
    __m512 x3 = _mm512_add_ps(x2, b), x4 = _mm512_add_ps(x3, b), x5 = _mm512_add_ps(x4, b);
    __m512 x6 = _mm512_add_ps(x5, b), x7 = _mm512_add_ps(x6, b), x8 = _mm512_add_ps(x7, b);
    __m512 x9 = _mm512_add_ps(x8, b), x10 = _mm512_add_ps(x9, b), x11 = _mm512_add_ps(x10, b);
    for (int64_t i = 0; i < iters; ++i) {
        x0 = _mm512_fmadd_ps(x0, a, b); x1 = _mm512_fmadd_ps(x1, a, b);
        x2 = _mm512_fmadd_ps(x2, a, b); x3 = _mm512_fmadd_ps(x3, a, b);
        x4 = _mm512_fmadd_ps(x4, a, b); x5 = _mm512_fmadd_ps(x5, a, b);
        x6 = _mm512_fmadd_ps(x6, a, b); x7 = _mm512_fmadd_ps(x7, a, b);
        x8 = _mm512_fmadd_ps(x8, a, b); x9 = _mm512_fmadd_ps(x9, a, b);
        x10 = _mm512_fmadd_ps(x10, a, b); x11 = _mm512_fmadd_ps(x11, a, b);
    }
    const __m512 s = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)),
                      _mm512_add_ps(_mm512_add_ps(x4, x5), _mm512_add_ps(x6, x7))),
        _mm512_add_ps(_mm512_add_ps(x8, x9), _mm512_add_ps(x10, x11)));
    return hsum(s);
}

int64_t fma_flops_per_iter() { return 2 * 16 * kChains; }

}  // namespace avx512
}  // namespace pylm
