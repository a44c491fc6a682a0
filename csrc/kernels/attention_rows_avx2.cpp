// AVX2 + FMA attention fold, one query row at a time (decode; see attention.h), the 8-lane
// twin of attention_rows_avx512.cpp with the same float operations (the canonical row path of
// attention_ref.cpp): keys in tiles of Bk (64 / 32 / 16 for D <= 64 / 128 / more), per row:
// scores 8 keys at a time (16 virtual lanes per dot product as two ymm, the canonical tree),
// tile max, exp, a 16-lane sum, one rescale per tile, then acc[0:D] = acc * corr + p_c * v_c in
// two interleaved FMA chains, 32 floats of the row per pass.
#include "kernels/attention_simd_avx2.h"
#include "kernels/attention_rows_walk.h"

namespace pylm {
namespace avx2 {

namespace {

// Lane c of the result = the canonical 16-lane sum (vmath_ref.h) of the virtual vector
// (lo[c], hi[c]) for 4 keys: v[i] += v[i + 8], v[i] += v[i + 4], v[i] += v[i + 2], v[0] + v[1].
// Returns 2 lanes per 128-bit block: [k0 k1 | k2 k3] as 64-bit pairs in blocks 0 / 1.
static inline __m256 reduce4(const __m256* lo, const __m256* hi) {
    __m256 w[4];
    for (int c = 0; c < 4; ++c) w[c] = _mm256_add_ps(lo[c], hi[c]);
    // x: [key c (i < 4) | key c + 2 (i < 4)]
    const __m256 x0 = _mm256_add_ps(_mm256_permute2f128_ps(w[0], w[2], 0x20),
                                    _mm256_permute2f128_ps(w[0], w[2], 0x31));
    const __m256 x1 = _mm256_add_ps(_mm256_permute2f128_ps(w[1], w[3], 0x20),
                                    _mm256_permute2f128_ps(w[1], w[3], 0x31));
    // y: [key 0 (i < 2), key 1 (i < 2) | key 2, key 3]
    const __m256d a = _mm256_castps_pd(x0), b = _mm256_castps_pd(x1);
    return _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
}

// Scores q . k_c for the nk (<= 8) keys at k, k + ldk, ...; lanes past nk are 0. Each key's
// dot product has 16 lanes (lane = d % 16, lo = lanes 0-7, hi = 8-15), one FMA per element,
// then the canonical tree: the AVX-512 qk_block's bits. Keys go 4 at a time (8 accumulators).
static inline __m256 qk_block(const float* q, const float* k, int64_t ldk, int D, int nk) {
    __m256 y[2];
    for (int g = 0; g < 2; ++g) {
        __m256 lo[4], hi[4];
        for (int c = 0; c < 4; ++c) lo[c] = hi[c] = _mm256_setzero_ps();
        const int kn = nk - 4 * g < 4 ? nk - 4 * g : 4;  // keys of this group (may be <= 0)
        const float* kg = k + 4 * g * ldk;
        const int dfull = D & ~15;
        if (kn == 4) {
            for (int d = 0; d < dfull; d += 16) {
                const __m256 q0 = _mm256_loadu_ps(q + d), q1 = _mm256_loadu_ps(q + d + 8);
#pragma GCC unroll 4
                for (int c = 0; c < 4; ++c) {
                    lo[c] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(kg + c * ldk + d), lo[c]);
                    hi[c] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(kg + c * ldk + d + 8), hi[c]);
                }
            }
        } else {
            for (int d = 0; d < dfull; d += 16) {
                const __m256 q0 = _mm256_loadu_ps(q + d), q1 = _mm256_loadu_ps(q + d + 8);
                for (int c = 0; c < kn; ++c) {
                    lo[c] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(kg + c * ldk + d), lo[c]);
                    hi[c] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(kg + c * ldk + d + 8), hi[c]);
                }
            }
        }
        if (dfull < D) {  // zero-padded last chunk, as AVX-512's masked loads
            const __m256 q0 = load_part(q + dfull, D - dfull);
            const __m256 q1 = load_part(q + dfull + 8, D - dfull - 8);
            for (int c = 0; c < kn; ++c) {
                lo[c] = _mm256_fmadd_ps(q0, load_part(kg + c * ldk + dfull, D - dfull), lo[c]);
                hi[c] = _mm256_fmadd_ps(q1, load_part(kg + c * ldk + dfull + 8, D - dfull - 8),
                                        hi[c]);
            }
        }
        y[g] = reduce4(lo, hi);
    }
    // v[0] + v[1] of every key: [k0 k1 k4 k5 | k2 k3 k6 k7], then into key order.
    const __m256 z = _mm256_hadd_ps(y[0], y[1]);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(z), _MM_SHUFFLE(3, 1, 2, 0)));
}

// acc[0:8*NV] (the last vector: `tail` lanes) = acc * corr + sum_{c in [ca, cb)} p[c] * v_c in
// the canonical order (attention_rows_avx512.cpp): keys ca, ca+2, ... chain onto acc * corr,
// keys ca+1, ca+3, ... onto a second chain from 0, then the two are added.
template <int NV>
static inline void pv_pass(const float* p, int64_t ca, int64_t cb, const float* v, int64_t ldv,
                           float* acc, __m256 corr, int tail) {
    __m256 o[NV], o2[NV];
#pragma GCC unroll 4
    for (int i = 0; i < NV; ++i) {
        o[i] = _mm256_mul_ps(load_part(acc + 8 * i, i == NV - 1 ? tail : 8), corr);
        o2[i] = _mm256_setzero_ps();
    }
    int64_t c = ca;
    for (; c + 1 < cb; c += 2) {
        const __m256 w = _mm256_broadcast_ss(p + c), w2 = _mm256_broadcast_ss(p + c + 1);
        const float* vc = v + c * ldv;
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) {
            const int n = i == NV - 1 ? tail : 8;
            o[i] = _mm256_fmadd_ps(w, load_part(vc + 8 * i, n), o[i]);
            o2[i] = _mm256_fmadd_ps(w2, load_part(vc + ldv + 8 * i, n), o2[i]);
        }
    }
    if (c < cb) {
        const __m256 w = _mm256_broadcast_ss(p + c);
        const float* vc = v + c * ldv;
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i)
            o[i] = _mm256_fmadd_ps(w, load_part(vc + 8 * i, i == NV - 1 ? tail : 8), o[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < NV; ++i) {
        const __m256 r = _mm256_add_ps(o[i], o2[i]);
        if (i == NV - 1 && tail < 8)
            _mm256_maskstore_ps(acc + 8 * i, lane_mask(tail), r);
        else
            _mm256_storeu_ps(acc + 8 * i, r);
    }
}

static void pv_row(const float* p, int64_t ca, int64_t cb, const float* v, int64_t ldv, float* acc,
                   int D, float corr) {
    const __m256 cv = _mm256_set1_ps(corr);
    for (int d = 0; d < D; d += 32) {  // 4 ymm x 2 chains per pass (16 ymm in all)
        const int rem = D - d;
        const int nv = rem >= 32 ? 4 : (rem + 7) / 8;
        const int tail = rem - 8 * (nv - 1) >= 8 ? 8 : rem - 8 * (nv - 1);
        switch (nv) {
        case 1: pv_pass<1>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 2: pv_pass<2>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 3: pv_pass<3>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        default: pv_pass<4>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        }
    }
}


// Rows that share one position (pos_step 0: the heads of a kv group) see the same keys of a
// tile: NR of them go through each phase together (scores, softmax, PV), so their dependency
// chains overlap; per row, the same operations in the same order as one row alone (NR = 1).
struct FoldRows {
    template <int NR>
    static void run(const AttnRows& q, int r0, const float* kt, int64_t ldk, const float* vt,
                    int64_t ldv, int64_t ca, int64_t cb, int64_t tn, AttnState& st) {
        const int D = q.D;
        const __m256 scale = _mm256_set1_ps(q.scale), neg_inf = _mm256_set1_ps(-__builtin_inff());
        const bool capped = q.softcap > 0.0f;
        const __m256 cap = _mm256_set1_ps(q.softcap), inv_cap = _mm256_set1_ps(1.0f / q.softcap);
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        alignas(32) float s[NR][64];
        __m256 mx[NR];
        for (int i = 0; i < NR; ++i) mx[i] = neg_inf;
        for (int64_t b = ca & ~int64_t(7); b < cb; b += 8) {
            const int nk = tn - b < 8 ? (int)(tn - b) : 8;
            // valid lanes: ca - b <= lane < cb - b
            const __m256i lo = _mm256_set1_epi32((int)(ca - b > 0 ? ca - b : 0) - 1);
            const __m256i hi = _mm256_set1_epi32((int)(cb - b < 8 ? cb - b : 8));
            const __m256 valid = _mm256_castsi256_ps(
                _mm256_and_si256(_mm256_cmpgt_epi32(iota, lo), _mm256_cmpgt_epi32(hi, iota)));
            for (int i = 0; i < NR; ++i) {
                __m256 sv = _mm256_mul_ps(
                    qk_block(q.q + (r0 + i) * q.ldq, kt + b * ldk, ldk, D, nk), scale);
                if (capped) sv = _mm256_mul_ps(cap, tanh_ps(_mm256_mul_ps(sv, inv_cap)));
                sv = _mm256_blendv_ps(neg_inf, sv, valid);
                _mm256_store_ps(s[i] + b, sv);
                mx[i] = _mm256_max_ps(mx[i], sv);
            }
        }
        float corr[NR];
        for (int i = 0; i < NR; ++i) {
            const int r = r0 + i;
            const float m_old = st.m[r];
            const float m_tile = hmax(mx[i]);
            const float m_new = m_tile > m_old ? m_tile : m_old;
            const __m256 mv = _mm256_set1_ps(m_new);
            // 16-lane sum, lane = key % 16 (lo: key % 16 < 8): the AVX-512 sum vector.
            __m256 sum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int64_t b = ca & ~int64_t(7); b < cb; b += 8) {
                const __m256 e = exp_ps(_mm256_sub_ps(_mm256_load_ps(s[i] + b), mv));
                _mm256_store_ps(s[i] + b, e);
                sum[(b >> 3) & 1] = _mm256_add_ps(sum[(b >> 3) & 1], e);
            }
            corr[i] = _mm256_cvtss_f32(exp_ps(_mm256_set1_ps(m_old - m_new)));
            st.l[r] = st.l[r] * corr[i] + hsum16(sum[0], sum[1]);
            st.m[r] = m_new;
        }
        for (int i = 0; i < NR; ++i)
            pv_row(s[i], ca, cb, vt, ldv, st.acc + static_cast<int64_t>(r0 + i) * D, D, corr[i]);
    }
};

}  // namespace

// Rows [ra, rb), each on its own (a lane per row would idle at decode sizes).
void attn_fold_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk, const float* v,
                    int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    walk_rows<FoldRows>(q, ra, rb, k, ldk, v, ldv, j0, n, st);
}

}  // namespace avx2
}  // namespace pylm
