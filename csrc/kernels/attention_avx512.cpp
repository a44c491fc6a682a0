// AVX-512 attention fold (see attention.h): keys in tiles of Bk (64 / 32 / 16 for D <= 64 /
// 128 / more, so the K and V tiles stay in L1 across the query rows), per row:
//   scores: 16 keys at a time, 16 dot-product accumulators reduced by one transpose-add tree
//           into a vector of 16 scores (lanes = keys), so the softmax runs on whole vectors;
//   softmax: tile max, exp(s - m), rescale the running sum/accumulator once per tile;
//   PV:     acc[0:D] += p_c * v_c over the tile, up to 8 zmm of the row in registers.
#include <immintrin.h>

// GCC 12 flags the self-initialized "undefined" operand inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/attention.h"

namespace pylm {
namespace avx512 {

namespace {

// exp(x) for x <= 88.3 (Cephes expf polynomial, ~1 ulp); x < -87.3 (incl. -inf) gives 0.
static inline __m512 exp_ps(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654475f);
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(88.3762626647949f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(~tiny, _mm512_scalef_ps(y, n));
}

// tanh(x) (Cephes tanhf): odd polynomial for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1).
static inline __m512 tanh_ps(__m512 x) {
    const __m512 ax = _mm512_abs_ps(x);
    const __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    const __m512 e = exp_ps(_mm512_add_ps(ax, ax));
    __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f),
                               _mm512_div_ps(_mm512_set1_ps(2.0f),
                                             _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    // copy the sign of x onto big
    big = _mm512_or_ps(big, _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
    const __mmask16 use_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(big, use_small, small);
}

static inline __mmask16 tail_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u));
}

static inline float hmax(__m512 v) {
    __m256 h = _mm256_max_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

static inline float hsum(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

// Lane c of the result = sum of the 16 lanes of a[c] (transpose-add tree, 45 instructions).
static inline __m512 reduce16(__m512* a) {
    __m512 t[8], u[4];
    for (int i = 0; i < 8; ++i)
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; ++i) {
        const __m512d x = _mm512_castps_pd(t[2 * i]), y = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    const __m512 v01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88),
                                     _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    const __m512 v23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88),
                                     _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(v01, v23, 0x88),
                         _mm512_shuffle_f32x4(v01, v23, 0xDD));
}

// Scores q . k_c for the nk (<= 16) keys at k, k + ldk, ...; lanes past nk are 0.
static inline __m512 qk_block(const float* q, const float* k, int64_t ldk, int D, int nk) {
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

// acc[0:16*NV] (the last vector under `last`) = acc * corr + sum_{c in [ca, cb)} p[c] * v_c.
// Keys alternate between two accumulator sets: with NV <= 4 one set is too few independent
// FMA chains to hide the FMA latency.
template <int NV>
static inline void pv_pass(const float* p, int64_t ca, int64_t cb, const float* v, int64_t ldv,
                           float* acc, __m512 corr, __mmask16 last) {
    __m512 o[NV], o2[NV];
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) {
        o[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(i == NV - 1 ? last : 0xFFFF, acc + 16 * i), corr);
        o2[i] = _mm512_setzero_ps();
    }
    int64_t c = ca;
    if (NV <= 4) {
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
    }
    for (; c < cb; ++c) {
        const __m512 w = _mm512_set1_ps(p[c]);
        const float* vc = v + c * ldv;
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i)
            o[i] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(i == NV - 1 ? last : 0xFFFF, vc + 16 * i),
                                   o[i]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i)
        _mm512_mask_storeu_ps(acc + 16 * i, i == NV - 1 ? last : 0xFFFF, _mm512_add_ps(o[i], o2[i]));
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

// One row at a time (rows [ra, rb)): for decode-sized blocks, where a lane per row would idle.
static void fold_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk,
                      const float* v, int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    const int D = q.D;
    const int64_t Bk = D <= 64 ? 64 : (D <= 128 ? 32 : 16);
    const __m512 scale = _mm512_set1_ps(q.scale), neg_inf = _mm512_set1_ps(-__builtin_inff());
    const bool capped = q.softcap > 0.0f;
    const __m512 cap = _mm512_set1_ps(q.softcap), inv_cap = _mm512_set1_ps(1.0f / q.softcap);
    alignas(64) float s[64];
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
            __m512 mx = neg_inf;
            for (int64_t b = ca & ~int64_t(15); b < cb; b += 16) {
                const int nk = tn - b < 16 ? (int)(tn - b) : 16;
                __m512 sv = _mm512_mul_ps(qk_block(qr, kt + b * ldk, ldk, D, nk), scale);
                if (capped) sv = _mm512_mul_ps(cap, tanh_ps(_mm512_mul_ps(sv, inv_cap)));
                const __mmask16 valid = (__mmask16)(tail_mask(cb - b) & ~tail_mask(ca - b));
                sv = _mm512_mask_mov_ps(neg_inf, valid, sv);
                _mm512_store_ps(s + b, sv);
                mx = _mm512_max_ps(mx, sv);
            }
            const float m_old = st.m[r];
            const float m_tile = hmax(mx);
            const float m_new = m_tile > m_old ? m_tile : m_old;
            const __m512 mv = _mm512_set1_ps(m_new);
            __m512 sum = _mm512_setzero_ps();
            for (int64_t b = ca & ~int64_t(15); b < cb; b += 16) {
                const __m512 e = exp_ps(_mm512_sub_ps(_mm512_load_ps(s + b), mv));
                _mm512_store_ps(s + b, e);
                sum = _mm512_add_ps(sum, e);
            }
            const float corr = _mm512_cvtss_f32(exp_ps(_mm512_set1_ps(m_old - m_new)));
            st.l[r] = st.l[r] * corr + hsum(sum);
            st.m[r] = m_new;
            pv_row(s, ca, cb, vt, ldv, st.acc + static_cast<int64_t>(r) * D, D, corr);
        }
    }
}


// ---- row groups: one lane per query row (16 rows), keys 16 at a time ----
//
// Scores come out transposed, S^T[c] = a vector over the rows for key c, from Q^T packed once
// per fold (pre-scaled) and broadcast K elements, so the running max / sum / rescale factor
// are vectors over rows and nothing is reduced across lanes. PV then reuses every V load for
// up to 4 rows.

constexpr int kGroupMinRows = 6;  // below this, the single-row path wastes fewer lanes
constexpr int kGroupMaxD = 256;   // Q^T and K-tile buffers live on the stack

// acc[c] (lanes = rows) = sum_d qt[d][lane] * kc[c][d] for the 16 keys of kc (row stride ldk).
template <int D_>
static inline void qk_fixed(const float* qt, const float* kc, __m512* acc) {
#pragma GCC unroll 2
    for (int d = 0; d < D_; ++d) {
        const __m512 qv = _mm512_load_ps(qt + 16 * d);
#pragma GCC unroll 16
        for (int c = 0; c < 16; ++c)
            acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(kc[c * D_ + d]), qv, acc[c]);
    }
}

static inline void qk_any(const float* qt, const float* kc, int D, __m512* acc) {
    for (int d = 0; d < D; ++d) {
        const __m512 qv = _mm512_load_ps(qt + 16 * d);
        for (int c = 0; c < 16; ++c)
            acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(kc[c * D + d]), qv, acc[c]);
    }
}

// o[r][0:D] = o[r] * corr[r] + sum_{c < nk} pt[c][r] * v_c for ROWS rows (o row stride D);
// pt and corr are indexed by lane (the caller offsets them to the first row).
template <int ROWS>
static void pv_rows(const float* pt, const float* corr, int nk, const float* v, int64_t ldv,
                    float* o, int D) {
    for (int d = 0; d < D; d += 64) {
        __mmask16 mk[4];
        for (int i = 0; i < 4; ++i) mk[i] = tail_mask(D - d - 16 * i);
        __m512 a[ROWS][4];
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; ++r) {
            const __m512 cr = _mm512_set1_ps(corr[r]);
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i)
                a[r][i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[i], o + r * D + d + 16 * i), cr);
        }
        const float* vc = v + d;
        for (int c = 0; c < nk; ++c, vc += ldv) {
            __m512 vv[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i) vv[i] = _mm512_maskz_loadu_ps(mk[i], vc + 16 * i);
#pragma GCC unroll 4
            for (int r = 0; r < ROWS; ++r) {
                const __m512 w = _mm512_set1_ps(pt[16 * c + r]);
#pragma GCC unroll 4
                for (int i = 0; i < 4; ++i) a[r][i] = _mm512_fmadd_ps(w, vv[i], a[r][i]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i)
                _mm512_mask_storeu_ps(o + r * D + d + 16 * i, mk[i], a[r][i]);
    }
}

// Rows [r0, r0 + R) (R <= 16) as one group.
static void fold_group(const AttnRows& q, int r0, int R, const float* k, int64_t ldk,
                       const float* v, int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    const int D = q.D;
    alignas(64) float qt[16 * kGroupMaxD];  // Q^T: [D][16 lanes], pre-scaled, lanes >= R zero
    alignas(64) float kbuf[16 * kGroupMaxD];  // a contiguous, zero-padded copy of a K tile
    alignas(64) float pt[16 * 16];            // P^T of the tile: [key][lane]
    alignas(64) float corr_s[16];
    for (int d = 0; d < D; ++d)
        for (int r = 0; r < 16; ++r)
            qt[16 * d + r] = r < R ? q.q[(r0 + r) * q.ldq + d] * q.scale : 0.0f;
    const __mmask16 live = tail_mask(R);
    const __m512 neg_inf = _mm512_set1_ps(-__builtin_inff());
    __m512 m = _mm512_mask_loadu_ps(neg_inf, live, st.m + r0);
    __m512 l = _mm512_maskz_loadu_ps(live, st.l + r0);
    const bool capped = q.softcap > 0.0f;
    const __m512 cap = _mm512_set1_ps(q.softcap), inv_cap = _mm512_set1_ps(1.0f / q.softcap);
    const int64_t pos0 = q.pos0 + r0 * q.pos_step;  // position of lane 0
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
        const int nk = n - t0 < 16 ? (int)(n - t0) : 16;
        // Lanes (rows) that see key j: r >= j - pos0 (causal), r < j - pos0 + window.
        __mmask16 km[16];
        __mmask16 any = 0;
        for (int c = 0; c < 16; ++c) {
            const int64_t rel = j0 + t0 + c - pos0;
            __mmask16 mk = c < nk ? live : (__mmask16)0;
            if (q.pos_step == 0) {  // every lane at position pos0
                if ((q.causal && rel > 0) || (q.window > 0 && rel + q.window <= 0)) mk = 0;
            } else {
                if (q.causal) mk &= (__mmask16)~tail_mask(rel);
                if (q.window > 0) mk &= tail_mask(rel + q.window);
            }
            km[c] = mk;
            any |= mk;
        }
        if (!any) continue;
        const float* kc = k + t0 * ldk;
        if (ldk != D || nk < 16) {
            for (int c = 0; c < 16; ++c)
                for (int d = 0; d < D; d += 16) {
                    const __mmask16 md = c < nk ? tail_mask(D - d) : (__mmask16)0;
                    _mm512_mask_storeu_ps(kbuf + c * D + d, tail_mask(D - d),
                                          _mm512_maskz_loadu_ps(md, kc + c * ldk + d));
                }
            kc = kbuf;
        }
        __m512 acc[16];
        for (int c = 0; c < 16; ++c) acc[c] = _mm512_setzero_ps();
        switch (D) {
        case 64: qk_fixed<64>(qt, kc, acc); break;
        case 128: qk_fixed<128>(qt, kc, acc); break;
        case 256: qk_fixed<256>(qt, kc, acc); break;
        default: qk_any(qt, kc, D, acc); break;
        }
        __m512 mt = neg_inf;
        for (int c = 0; c < 16; ++c) {
            if (capped) acc[c] = _mm512_mul_ps(cap, tanh_ps(_mm512_mul_ps(acc[c], inv_cap)));
            acc[c] = _mm512_mask_mov_ps(neg_inf, km[c], acc[c]);
            mt = _mm512_max_ps(mt, acc[c]);
        }
        const __m512 m_new = _mm512_max_ps(m, mt);
        // Rows that have seen no key yet keep m = -inf: subtract 0 there instead (no inf - inf).
        const __m512 m_sub = _mm512_mask_mov_ps(m_new, _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_EQ_OQ),
                                                _mm512_setzero_ps());
        const __m512 corr = exp_ps(_mm512_sub_ps(m, m_sub));
        __m512 sum = _mm512_setzero_ps();
        for (int c = 0; c < nk; ++c) {
            const __m512 e = exp_ps(_mm512_sub_ps(acc[c], m_sub));
            _mm512_store_ps(pt + 16 * c, e);
            sum = _mm512_add_ps(sum, e);
        }
        l = _mm512_fmadd_ps(l, corr, sum);
        m = m_new;
        _mm512_store_ps(corr_s, corr);
        const float* vt = v + t0 * ldv;
        float* o = st.acc + static_cast<int64_t>(r0) * D;
        for (int r = 0; r < R; r += 4) {
            switch (R - r >= 4 ? 4 : R - r) {
            case 1: pv_rows<1>(pt + r, corr_s + r, nk, vt, ldv, o + r * D, D); break;
            case 2: pv_rows<2>(pt + r, corr_s + r, nk, vt, ldv, o + r * D, D); break;
            case 3: pv_rows<3>(pt + r, corr_s + r, nk, vt, ldv, o + r * D, D); break;
            default: pv_rows<4>(pt + r, corr_s + r, nk, vt, ldv, o + r * D, D); break;
            }
        }
    }
    _mm512_mask_storeu_ps(st.m + r0, live, m);
    _mm512_mask_storeu_ps(st.l + r0, live, l);
}

}  // namespace

void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st) {
    int r = 0;
    if (q.D <= kGroupMaxD)
        for (; q.rows - r >= kGroupMinRows; r += 16) {
            const int R = q.rows - r < 16 ? q.rows - r : 16;
            fold_group(q, r, R, k, ldk, v, ldv, j0, n, st);
        }
    if (r < q.rows) fold_rows(q, r, q.rows, k, ldk, v, ldv, j0, n, st);
}

}  // namespace avx512
}  // namespace pylm
