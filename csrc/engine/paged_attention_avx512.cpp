// avx512 variant of the paged attention group kernel: vectorized q.k dots and p*v updates
// (D a multiple of 16 on the fast path, scalar tail otherwise).
#include <immintrin.h>

#include <cmath>

#include "engine/paged_attention.h"

namespace pylm {
namespace avx512 {

namespace {

static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

static inline float dot(const float* a, const float* b, int D) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int d = 0;
    for (; d + 2 * 16 <= D; d += 2 * 16) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d + 16), _mm512_loadu_ps(b + d + 16), s1);
    }
    for (; d + 16 <= D; d += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), s0);
    float r = hsum(_mm512_add_ps(s0, s1));
    for (; d < D; ++d) r += a[d] * b[d];
    return r;
}

static inline void scale_inplace(float* o, float c, int D) {
    const __m512 vc = _mm512_set1_ps(c);
    int d = 0;
    for (; d + 16 <= D; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), vc));
    for (; d < D; ++d) o[d] *= c;
}

static inline void axpy(float* o, float p, const float* v, int D) {
    const __m512 vp = _mm512_set1_ps(p);
    int d = 0;
    for (; d + 16 <= D; d += 16) _mm512_storeu_ps(o + d, _mm512_fmadd_ps(vp, _mm512_loadu_ps(v + d), _mm512_loadu_ps(o + d)));
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
        const __m512 vi = _mm512_set1_ps(inv);
        float* o = a.out + (int64_t)i * D;
        const float* src = acc + (int64_t)i * D;
        int d = 0;
        for (; d + 16 <= D; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(src + d), vi));
        for (; d < D; ++d) o[d] = src[d] * inv;
    }
}

}  // namespace avx512
}  // namespace pylm
