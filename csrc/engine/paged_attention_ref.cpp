// Scalar reference of the paged attention group kernel (the oracle for the SIMD variants).
#include <cmath>

#include "engine/paged_attention.h"

namespace pylm {
namespace ref {

void paged_attention_group(const PagedAttnGroup& a) {
    const int g = a.g, D = a.D;
    float m[kPagedAttnMaxG], l[kPagedAttnMaxG];
    float acc[kPagedAttnMaxG * kPagedAttnMaxD];
    for (int i = 0; i < g; ++i) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    for (int64_t x = 0; x < (int64_t)g * D; ++x) acc[x] = 0.0f;
    const int64_t stride = (int64_t)a.block_size * a.kv_dim;
    float s[kPagedAttnMaxG][64];
    for (int64_t j0 = a.k_begin; j0 < a.k_end;) {
        // A run of keys inside one block: [j0, j1).
        const int64_t blk = j0 / a.block_size;
        int64_t j1 = (blk + 1) * a.block_size;
        if (j1 > a.k_end) j1 = a.k_end;
        if (j1 - j0 > 64) j1 = j0 + 64;
        const float* kb = a.k_pool + a.table[blk] * stride + a.kv_offset;
        const float* vb = a.v_pool + a.table[blk] * stride + a.kv_offset;
        for (int i = 0; i < g; ++i) {
            const float* q = a.q + (int64_t)i * D;
            float mx = m[i];
            for (int64_t j = j0; j < j1; ++j) {
                const float* k = kb + (j % a.block_size) * a.kv_dim;
                float dot = 0.0f;
                for (int d = 0; d < D; ++d) dot += q[d] * k[d];
                dot *= a.scale;
                if (a.softcap > 0.0f) dot = a.softcap * std::tanh(dot / a.softcap);
                s[i][j - j0] = dot;
                if (dot > mx) mx = dot;
            }
            const float corr = std::exp(m[i] - mx);
            float* o = acc + (int64_t)i * D;
            if (corr != 1.0f)
                for (int d = 0; d < D; ++d) o[d] *= corr;
            l[i] *= corr;
            m[i] = mx;
            for (int64_t j = j0; j < j1; ++j) {
                const float p = std::exp(s[i][j - j0] - mx);
                l[i] += p;
                const float* v = vb + (j % a.block_size) * a.kv_dim;
                for (int d = 0; d < D; ++d) o[d] += p * v[d];
            }
        }
        j0 = j1;
    }
    for (int i = 0; i < g; ++i) {
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        for (int d = 0; d < D; ++d) a.out[(int64_t)i * D + d] = acc[(int64_t)i * D + d] * inv;
    }
}

}  // namespace ref
}  // namespace pylm
