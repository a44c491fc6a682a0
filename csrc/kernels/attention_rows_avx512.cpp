// AVX-512 attention fold, one query row at a time (decode: a few rows per kv head; see
// attention.h). Keys in tiles of Bk (64 / 32 / 16 for D <= 64 / 128 / more, so the K and V
// tiles stay in L1 across the rows), per row:
//   scores: 16 keys at a time, 16 dot-product accumulators (lane = d % 16) reduced by the
//           canonical tree into a vector of 16 scores (lanes = keys), times scale;
//   softmax: tile max, exp(s - m), 16-lane sum (lane = key % 16) + the canonical tree, one
//           rescale of the running sum/accumulator per tile;
//   PV:     acc[0:D] = acc * corr + sum p_c * v_c over the tile in two interleaved FMA chains,
//           up to 8 zmm of the row (x 2 chains) in registers.
// This is the canonical row-path evaluation (attention_ref.cpp), bit for bit.
#include "kernels/attention_simd_avx512.h"
#include "kernels/attention_rows_walk.h"

namespace pylm {
namespace avx512 {

namespace {

// Lane c of the result = the canonical 16-lane sum (vmath_ref.h) of a[c], for 16 vectors at
// once: v[i] += v[i + 8], v[i] += v[i + 4], v[i] += v[i + 2], v[0] + v[1], each step pairing
// two keys per instruction; 46 instructions.
static inline __m512 reduce16(const __m512* a) {
    __m512 p[8], q[4], r[2];
    for (int c = 0; c < 8; ++c)  // blocks: [key c (i < 8) x 2, key c + 8 (i < 8) x 2]
        p[c] = _mm512_add_ps(_mm512_shuffle_f32x4(a[c], a[c + 8], 0x44),
                             _mm512_shuffle_f32x4(a[c], a[c + 8], 0xEE));
    for (int c = 0; c < 4; ++c)  // blocks: keys c, c + 8, c + 4, c + 12 (i < 4)
        q[c] = _mm512_add_ps(_mm512_shuffle_f32x4(p[c], p[c + 4], 0x88),
                             _mm512_shuffle_f32x4(p[c], p[c + 4], 0xDD));
    for (int c = 0; c < 2; ++c) {  // blocks: keys (c, c+2), (c+8, c+10), (c+4, c+6), (c+12, c+14)
        const __m512d x = _mm512_castps_pd(q[c]), y = _mm512_castps_pd(q[c + 2]);
        r[c] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    // lanes: keys 0 2 1 3 | 8 10 9 11 | 4 6 5 7 | 12 14 13 15
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    return _mm512_permutexvar_ps(order, z);
}

// qk_block for D = 16 * NQ: the query's NQ vectors stay in registers and key c's D floats are
// read at fixed offsets from one pointer stepped by ldk (16 key pointers spilled to the stack),
// the same FMAs in the same order per accumulator.
template <int NQ>
static inline __m512 qk_block_q(const float* q, const float* k, int64_t ldk, int nk) {
    __m512 qv[NQ], acc[16];
#pragma GCC unroll 8
    for (int i = 0; i < NQ; ++i) qv[i] = _mm512_loadu_ps(q + 16 * i);
#pragma GCC unroll 16
    for (int c = 0; c < 16; ++c) acc[c] = _mm512_setzero_ps();
    if (nk == 16) {
#pragma GCC unroll 16
        for (int c = 0; c < 16; ++c) {
#pragma GCC unroll 8
            for (int i = 0; i < NQ; ++i)
                acc[c] = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(k + 16 * i), acc[c]);
            k += ldk;
        }
    } else {
        for (int c = 0; c < nk; ++c) {
#pragma GCC unroll 8
            for (int i = 0; i < NQ; ++i)
                acc[c] = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(k + 16 * i), acc[c]);
            k += ldk;
        }
    }
    return reduce16(acc);
}

// Scores q . k_c for the nk (<= 16) keys at k, k + ldk, ...; lanes past nk are 0.
static inline __m512 qk_block(const float* q, const float* k, int64_t ldk, int D, int nk) {
    switch (D) {
    case 64: return qk_block_q<4>(q, k, ldk, nk);
    case 128: return qk_block_q<8>(q, k, ldk, nk);
    default: break;
    }
    __m512 acc[16];
    for (int c = 0; c < 16; ++c) acc[c] = _mm512_setzero_ps();
    if (nk == 16) {
        for (int d = 0; d < D; d += 16) {
            const __mmask16 m = tail_mask(D - d);
            const __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
#pragma GCC unroll 16
            for (int c = 0; c < 16; ++c)
                acc[c] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + c * ldk + d), acc[c]);
        }
    } else {
        for (int d = 0; d < D; d += 16) {
            const __mmask16 m = tail_mask(D - d);
            const __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
            for (int c = 0; c < nk; ++c)
                acc[c] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + c * ldk + d), acc[c]);
        }
    }
    return reduce16(acc);
}

// acc[0:16*NV] (the last vector under `last`) = acc * corr + sum_{c in [ca, cb)} p[c] * v_c,
// canonical order: keys ca, ca+2, ... chain onto acc * corr, keys ca+1, ca+3, ... onto a second
// chain from 0 (two independent FMA chains hide the FMA latency), then the two are added.
template <int NV>
static inline void pv_pass(const float* p, int64_t ca, int64_t cb, const float* v, int64_t ldv,
                           float* acc, __m512 corr, __mmask16 last) {
    __m512 o[NV], o2[NV];
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) {
        o[i] =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(i == NV - 1 ? last : 0xFFFF, acc + 16 * i), corr);
        o2[i] = _mm512_setzero_ps();
    }
    int64_t c = ca;
    for (; c + 1 < cb; c += 2) {
        const __m512 w = _mm512_set1_ps(p[c]), w2 = _mm512_set1_ps(p[c + 1]);
        const float* vc = v + c * ldv;
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i) {
            const __mmask16 m = i == NV - 1 ? last : 0xFFFF;
            o[i] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, vc + 16 * i), o[i]);
            o2[i] = _mm512_fmadd_ps(w2, _mm512_maskz_loadu_ps(m, vc + ldv + 16 * i), o2[i]);
        }
    }
    if (c < cb) {
        const __m512 w = _mm512_set1_ps(p[c]);
        const float* vc = v + c * ldv;
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i)
            o[i] = _mm512_fmadd_ps(
                w, _mm512_maskz_loadu_ps(i == NV - 1 ? last : 0xFFFF, vc + 16 * i), o[i]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i)
        _mm512_mask_storeu_ps(acc + 16 * i, i == NV - 1 ? last : 0xFFFF,
                              _mm512_add_ps(o[i], o2[i]));
}

static void pv_row(const float* p, int64_t ca, int64_t cb, const float* v, int64_t ldv, float* acc,
                   int D, float corr) {
    const __m512 cv = _mm512_set1_ps(corr);
    for (int d = 0; d < D; d += 128) {
        const int rem = D - d;
        const int nv = rem >= 128 ? 8 : (rem + 15) / 16;
        const __mmask16 last = tail_mask(rem - 16 * (nv - 1));
        switch (nv) {
        case 1: pv_pass<1>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        case 2: pv_pass<2>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        case 3: pv_pass<3>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        case 4: pv_pass<4>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        case 5: pv_pass<5>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        case 6: pv_pass<6>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        case 7: pv_pass<7>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        default: pv_pass<8>(p, ca, cb, v + d, ldv, acc + d, cv, last); break;
        }
    }
}


// Rows that share one position (pos_step 0: the heads of a kv group) see the same keys of a
// tile: NR of them go through each phase together (scores, softmax, PV), so their dependency
// chains overlap instead of running one after the other; per row, the same operations in the
// same order as one row alone (NR = 1).
struct FoldRows {
    template <int NR>
    static void run(const AttnRows& q, int r0, const float* kt, int64_t ldk, const float* vt,
                    int64_t ldv, int64_t ca, int64_t cb, int64_t tn, AttnState& st) {
        const int D = q.D;
        const __m512 scale = _mm512_set1_ps(q.scale), neg_inf = _mm512_set1_ps(-__builtin_inff());
        const bool capped = q.softcap > 0.0f;
        const __m512 cap = _mm512_set1_ps(q.softcap), inv_cap = _mm512_set1_ps(1.0f / q.softcap);
        alignas(64) float s[NR][64];
        __m512 mx[NR];
        for (int i = 0; i < NR; ++i) mx[i] = neg_inf;
        for (int64_t b = ca & ~int64_t(15); b < cb; b += 16) {
            const int nk = tn - b < 16 ? (int)(tn - b) : 16;
            const __mmask16 valid = (__mmask16)(tail_mask(cb - b) & ~tail_mask(ca - b));
            for (int i = 0; i < NR; ++i) {
                __m512 sv = _mm512_mul_ps(
                    qk_block(q.q + (r0 + i) * q.ldq, kt + b * ldk, ldk, D, nk), scale);
                if (capped) sv = _mm512_mul_ps(cap, tanh_ps(_mm512_mul_ps(sv, inv_cap)));
                sv = _mm512_mask_mov_ps(neg_inf, valid, sv);
                _mm512_store_ps(s[i] + b, sv);
                mx[i] = _mm512_max_ps(mx[i], sv);
            }
        }
        float corr[NR];
        for (int i = 0; i < NR; ++i) {
            const int r = r0 + i;
            const float m_old = st.m[r];
            const float m_tile = hmax(mx[i]);
            const float m_new = m_tile > m_old ? m_tile : m_old;
            const __m512 mv = _mm512_set1_ps(m_new);
            __m512 sum = _mm512_setzero_ps();
            for (int64_t b = ca & ~int64_t(15); b < cb; b += 16) {
                const __m512 e = exp_ps(_mm512_sub_ps(_mm512_load_ps(s[i] + b), mv));
                _mm512_store_ps(s[i] + b, e);
                sum = _mm512_add_ps(sum, e);
            }
            corr[i] = _mm512_cvtss_f32(exp_ps(_mm512_set1_ps(m_old - m_new)));
            st.l[r] = st.l[r] * corr[i] + hsum(sum);
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

}  // namespace avx512
}  // namespace pylm
