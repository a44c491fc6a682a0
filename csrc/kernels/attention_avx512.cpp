// AVX-512 attention fold (see attention.h): the entry point, and the row-group path for
// blocks of >= kGroupMinRows query rows (prefill). Fewer rows go to attn_fold_rows
// (attention_rows_avx512.cpp).
#include "kernels/attention_simd_avx512.h"

namespace pylm {
namespace avx512 {

namespace {

// ---- row groups: one lane per query row (16 rows), keys 16 at a time ----
//
// Scores come out transposed, S^T[c] = a vector over the rows for key c, from Q^T packed once
// per fold (pre-scaled) and broadcast K elements, so the running max / sum / rescale factor
// are vectors over rows and nothing is reduced across lanes. PV then reuses every V load for
// up to 4 rows.

constexpr int kGroupMinRows = kAttnGroupMinRows;  // below this the row path wastes fewer lanes
constexpr int kGroupMaxD = kAttnGroupMaxD;        // Q^T and K-tile buffers live on the stack
static_assert(kAttnGroupRows == 16, "one lane per row");

// acc[c] (lanes = rows) = sum_d qt[d][lane] * kc[c][d] for the 16 keys of kc (row stride D_).
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
    alignas(64) float qt[16 * kGroupMaxD];    // Q^T: [D][16 lanes], pre-scaled, lanes >= R zero
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
        const __m512 m_sub = _mm512_mask_mov_ps(
            m_new, _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_EQ_OQ), _mm512_setzero_ps());
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
    if (r < q.rows) attn_fold_rows(q, r, q.rows, k, ldk, v, ldv, j0, n, st);
}

}  // namespace avx512
}  // namespace pylm
