// AVX2 + FMA attention fold, one query row at a time (decode; see attention.h), the 8-lane
// twin of attention_rows_avx512.cpp: keys in tiles of Bk (64 / 32 / 16 for D <= 64 / 128 / more),
// per row: scores 8 keys at a time (8 dot-product accumulators, one transpose-add tree -> a vector
// of 8 scores), tile max, exp, one rescale per tile, then acc[0:D] += p_c * v_c with up to 8 ymm of
// the row in registers.
#include "kernels/attention_simd_avx2.h"

namespace pylm {
namespace avx2 {

namespace {

// Lane c of the result = sum of the 8 lanes of a[c] (transpose-add tree).
static inline __m256 reduce8(const __m256* a) {
    __m256 t[4], u[2];
    for (int i = 0; i < 4; ++i)
        t[i] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 2; ++i) {
        const __m256d x = _mm256_castps_pd(t[2 * i]), y = _mm256_castps_pd(t[2 * i + 1]);
        u[i] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
    }
    return _mm256_add_ps(_mm256_permute2f128_ps(u[0], u[1], 0x20),
                         _mm256_permute2f128_ps(u[0], u[1], 0x31));
}

// Scores q . k_c for the nk (<= 8) keys at k, k + ldk, ...; lanes past nk are 0.
static inline __m256 qk_block(const float* q, const float* k, int64_t ldk, int D, int nk) {
    __m256 acc[8];
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
    const int dfull = D & ~7;
    if (nk == 8) {
        for (int d = 0; d < dfull; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c)
                acc[c] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + c * ldk + d), acc[c]);
        }
    } else {
        for (int d = 0; d < dfull; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            for (int c = 0; c < nk; ++c)
                acc[c] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + c * ldk + d), acc[c]);
        }
    }
    if (dfull < D) {
        const __m256 qv = load_part(q + dfull, D - dfull);
        for (int c = 0; c < nk; ++c)
            acc[c] = _mm256_fmadd_ps(qv, load_part(k + c * ldk + dfull, D - dfull), acc[c]);
    }
    return reduce8(acc);
}

// acc[0:8*NV] (the last vector: `tail` lanes) = acc * corr + sum_{c in [ca, cb)} p[c] * v_c.
template <int NV>
static inline void pv_pass(const float* p, int64_t ca, int64_t cb, const float* v, int64_t ldv,
                           float* acc, __m256 corr, int tail) {
    __m256 o[NV];
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i)
        o[i] = _mm256_mul_ps(load_part(acc + 8 * i, i == NV - 1 ? tail : 8), corr);
    for (int64_t c = ca; c < cb; ++c) {
        const __m256 w = _mm256_broadcast_ss(p + c);
        const float* vc = v + c * ldv;
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i)
            o[i] = _mm256_fmadd_ps(w, load_part(vc + 8 * i, i == NV - 1 ? tail : 8), o[i]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) {
        if (i == NV - 1 && tail < 8)
            _mm256_maskstore_ps(acc + 8 * i, lane_mask(tail), o[i]);
        else
            _mm256_storeu_ps(acc + 8 * i, o[i]);
    }
}

static void pv_row(const float* p, int64_t ca, int64_t cb, const float* v, int64_t ldv, float* acc,
                   int D, float corr) {
    const __m256 cv = _mm256_set1_ps(corr);
    for (int d = 0; d < D; d += 64) {
        const int rem = D - d;
        const int nv = rem >= 64 ? 8 : (rem + 7) / 8;
        const int tail = rem - 8 * (nv - 1) >= 8 ? 8 : rem - 8 * (nv - 1);
        switch (nv) {
        case 1: pv_pass<1>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 2: pv_pass<2>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 3: pv_pass<3>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 4: pv_pass<4>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 5: pv_pass<5>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 6: pv_pass<6>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        case 7: pv_pass<7>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        default: pv_pass<8>(p, ca, cb, v + d, ldv, acc + d, cv, tail); break;
        }
    }
}

}  // namespace

// One row at a time (rows [ra, rb)): for decode-sized blocks, where a lane per row would idle.
void attn_fold_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk, const float* v,
                    int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    const int D = q.D;
    const int64_t Bk = D <= 64 ? 64 : (D <= 128 ? 32 : 16);
    const __m256 scale = _mm256_set1_ps(q.scale), neg_inf = _mm256_set1_ps(-__builtin_inff());
    const bool capped = q.softcap > 0.0f;
    const __m256 cap = _mm256_set1_ps(q.softcap), inv_cap = _mm256_set1_ps(1.0f / q.softcap);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    alignas(32) float s[64];
    for (int64_t t0 = 0; t0 < n; t0 += Bk) {
        const int64_t tn = n - t0 < Bk ? n - t0 : Bk;
        const int64_t jt = j0 + t0;  // absolute index of the tile's first key
        const float* kt = k + t0 * ldk;
        const float* vt = v + t0 * ldv;
        for (int r = ra; r < rb; ++r) {
            // This row's keys inside the tile: [ca, cb).
            const int64_t p = q.pos0 + r * q.pos_step;
            int64_t ca = 0, cb = tn;
            if (q.causal && p - jt + 1 < cb) cb = p - jt + 1;
            if (q.window > 0 && p - q.window + 1 - jt > ca) ca = p - q.window + 1 - jt;
            if (ca >= cb) continue;
            const float* qr = q.q + r * q.ldq;
            __m256 mx = neg_inf;
            for (int64_t b = ca & ~int64_t(7); b < cb; b += 8) {
                const int nk = tn - b < 8 ? (int)(tn - b) : 8;
                __m256 sv = _mm256_mul_ps(qk_block(qr, kt + b * ldk, ldk, D, nk), scale);
                if (capped) sv = _mm256_mul_ps(cap, tanh_ps(_mm256_mul_ps(sv, inv_cap)));
                // valid lanes: ca - b <= lane < cb - b
                const __m256i lo = _mm256_set1_epi32((int)(ca - b > 0 ? ca - b : 0) - 1);
                const __m256i hi = _mm256_set1_epi32((int)(cb - b < 8 ? cb - b : 8));
                const __m256 valid = _mm256_castsi256_ps(
                    _mm256_and_si256(_mm256_cmpgt_epi32(iota, lo), _mm256_cmpgt_epi32(hi, iota)));
                sv = _mm256_blendv_ps(neg_inf, sv, valid);
                _mm256_store_ps(s + b, sv);
                mx = _mm256_max_ps(mx, sv);
            }
            const float m_old = st.m[r];
            const float m_tile = hmax(mx);
            const float m_new = m_tile > m_old ? m_tile : m_old;
            const __m256 mv = _mm256_set1_ps(m_new);
            __m256 sum = _mm256_setzero_ps();
            for (int64_t b = ca & ~int64_t(7); b < cb; b += 8) {
                const __m256 e = exp_ps(_mm256_sub_ps(_mm256_load_ps(s + b), mv));
                _mm256_store_ps(s + b, e);
                sum = _mm256_add_ps(sum, e);
            }
            const float corr = _mm256_cvtss_f32(exp_ps(_mm256_set1_ps(m_old - m_new)));
            st.l[r] = st.l[r] * corr + hsum(sum);
            st.m[r] = m_new;
            pv_row(s, ca, cb, vt, ldv, st.acc + static_cast<int64_t>(r) * D, D, corr);
        }
    }
}

}  // namespace avx2
}  // namespace pylm
