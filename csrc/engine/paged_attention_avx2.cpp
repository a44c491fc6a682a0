// avx2 variant of the paged attention group kernel: vectorized q.k dots and p*v updates
// (D a multiple of 8 on the fast path, scalar tail otherwise).
#include <immintrin.h>

#include <cmath>

#include "engine/paged_attention.h"

namespace pylm {
namespace avx2 {

namespace {

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float dot(const float* a, const float* b, int D) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int d = 0;
    for (; d + 2 * 8 <= D; d += 2 * 8) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), s1);
    }
    for (; d + 8 <= D; d += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0);
    float r = hsum(_mm256_add_ps(s0, s1));
    for (; d < D; ++d) r += a[d] * b[d];
    return r;
}

static inline void scale_inplace(float* o, float c, int D) {
    const __m256 vc = _mm256_set1_ps(c);
    int d = 0;
    for (; d + 8 <= D; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), vc));
    for (; d < D; ++d) o[d] *= c;
}

static inline void axpy(float* o, float p, const float* v, int D) {
    const __m256 vp = _mm256_set1_ps(p);
    int d = 0;
    for (; d + 8 <= D; d += 8) _mm256_storeu_ps(o + d, _mm256_fmadd_ps(vp, _mm256_loadu_ps(v + d), _mm256_loadu_ps(o + d)));
    for (; d < D; ++d) o[d] += p * v[d];
}

}  // namespace

void paged_attention_group(const PagedAttnGroup& a) {
    const int g = a.g, D = a.D;
    float m[kPagedAttnMaxG], l[kPagedAttnMaxG];
    alignas(64) float acc[kPagedAttnMaxG * kPagedAttnMaxD];
    for (int i = 0; i < g; ++i) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    for (int64_t x = 0; x < (int64_t)g * D; ++x) acc[x] = 0.0f;
    const int64_t stride = (int64_t)a.block_size * a.kv_dim;
    float s[kPagedAttnMaxG][64];
    for (int64_t j0 = a.k_begin; j0 < a.k_end;) {
        const int64_t blk = j0 / a.block_size;
        int64_t j1 = (blk + 1) * a.block_size;
        if (j1 > a.k_end) j1 = a.k_end;
        if (j1 - j0 > 64) j1 = j0 + 64;
        const float* kb = a.k_pool + a.table[blk] * stride + a.kv_offset;
        const float* vb = a.v_pool + a.table[blk] * stride + a.kv_offset;
        // Scores of every head of the group for this run of keys (each K row read once).
        float mx[kPagedAttnMaxG];
        for (int i = 0; i < g; ++i) mx[i] = m[i];
        for (int64_t j = j0; j < j1; ++j) {
            const float* k = kb + (j % a.block_size) * a.kv_dim;
            for (int i = 0; i < g; ++i) {
                float x = dot(a.q + (int64_t)i * D, k, D) * a.scale;
                if (a.softcap > 0.0f) x = a.softcap * std::tanh(x / a.softcap);
                s[i][j - j0] = x;
                if (x > mx[i]) mx[i] = x;
            }
        }
        for (int i = 0; i < g; ++i) {
            const float corr = std::exp(m[i] - mx[i]);
            if (corr != 1.0f) scale_inplace(acc + (int64_t)i * D, corr, D);
            l[i] *= corr;
            m[i] = mx[i];
            for (int64_t j = j0; j < j1; ++j) s[i][j - j0] = std::exp(s[i][j - j0] - mx[i]);
        }
        for (int64_t j = j0; j < j1; ++j) {
            const float* v = vb + (j % a.block_size) * a.kv_dim;
            for (int i = 0; i < g; ++i) {
                l[i] += s[i][j - j0];
                axpy(acc + (int64_t)i * D, s[i][j - j0], v, D);
            }
        }
        j0 = j1;
    }
    for (int i = 0; i < g; ++i) {
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        const __m256 vi = _mm256_set1_ps(inv);
        float* o = a.out + (int64_t)i * D;
        const float* src = acc + (int64_t)i * D;
        int d = 0;
        for (; d + 8 <= D; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(src + d), vi));
        for (; d < D; ++d) o[d] = src[d] * inv;
    }
}

}  // namespace avx2
}  // namespace pylm
