// AVX2 + FMA attention fold (see attention.h): the entry point, and the row-group path for
// blocks of >= kAttnGroupMinRows query rows (prefill). Fewer rows go to attn_fold_rows
// (attention_rows_avx2.cpp). Each lane (row) performs the float operations of the canonical
// group path of attention_ref.cpp, so the results equal AVX-512's 16-lane groups bit for bit.
#include "kernels/attention_simd_avx2.h"

namespace pylm {
namespace avx2 {

namespace {

// ---- row groups: one lane per query row (8 rows), keys 16 at a time ----
//
// Scores come out transposed, S^T[c] = a vector over the rows for key c, from Q^T packed once
// per fold (pre-scaled) and broadcast K elements, so the running max / sum / rescale factor
// are vectors over rows and nothing is reduced across lanes. PV reuses each V load for up to
// 4 rows.

constexpr int kGroupMaxD = kAttnGroupMaxD;  // Q^T and K-tile buffers live on the stack

// s[c] (lanes = rows) = sum_d qt[d][lane] * kc[c][d] for 8 keys of kc (row stride D_).
template <int D_>
static inline void qk_fixed(const float* qt, const float* kc, __m256* s) {
    __m256 acc[8];
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int d = 0; d < D_; ++d) {
        const __m256 qv = _mm256_load_ps(qt + 8 * d);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c)
            acc[c] = _mm256_fmadd_ps(_mm256_broadcast_ss(kc + c * D_ + d), qv, acc[c]);
    }
    for (int c = 0; c < 8; ++c) s[c] = acc[c];
}

static inline void qk_any(const float* qt, const float* kc, int D, __m256* s) {
    __m256 acc[8];
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
    for (int d = 0; d < D; ++d) {
        const __m256 qv = _mm256_load_ps(qt + 8 * d);
        for (int c = 0; c < 8; ++c)
            acc[c] = _mm256_fmadd_ps(_mm256_broadcast_ss(kc + c * D + d), qv, acc[c]);
    }
    for (int c = 0; c < 8; ++c) s[c] = acc[c];
}

// o[r][0:D] = o[r] * corr[r] + sum_{c < nk} pt[c][r] * v_c for ROWS rows (o row stride D);
// pt (8 lanes per key) and corr are indexed by lane (the caller offsets them to the first row).
template <int ROWS>
static void pv_rows(const float* pt, const float* corr, int nk, const float* v, int64_t ldv,
                    float* o, int D) {
    for (int d = 0; d < D; d += 16) {
        const int n0 = D - d, n1 = D - d - 8;
        __m256 a[ROWS][2];
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; ++r) {
            const __m256 cr = _mm256_set1_ps(corr[r]);
            a[r][0] = _mm256_mul_ps(load_part(o + r * D + d, n0), cr);
            a[r][1] = _mm256_mul_ps(load_part(o + r * D + d + 8, n1), cr);
        }
        const float* vc = v + d;
        if (n0 >= 16) {
            for (int c = 0; c < nk; ++c, vc += ldv) {
                const __m256 v0 = _mm256_loadu_ps(vc), v1 = _mm256_loadu_ps(vc + 8);
#pragma GCC unroll 4
                for (int r = 0; r < ROWS; ++r) {
                    const __m256 w = _mm256_broadcast_ss(pt + 8 * c + r);
                    a[r][0] = _mm256_fmadd_ps(w, v0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(w, v1, a[r][1]);
                }
            }
        } else {
            for (int c = 0; c < nk; ++c, vc += ldv) {
                const __m256 v0 = load_part(vc, n0), v1 = load_part(vc + 8, n1);
                for (int r = 0; r < ROWS; ++r) {
                    const __m256 w = _mm256_broadcast_ss(pt + 8 * c + r);
                    a[r][0] = _mm256_fmadd_ps(w, v0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(w, v1, a[r][1]);
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; ++r) {
            if (n0 >= 16) {
                _mm256_storeu_ps(o + r * D + d, a[r][0]);
                _mm256_storeu_ps(o + r * D + d + 8, a[r][1]);
            } else {
                _mm256_maskstore_ps(o + r * D + d, lane_mask(n0), a[r][0]);
                _mm256_maskstore_ps(o + r * D + d + 8, lane_mask(n1), a[r][1]);
            }
        }
    }
}

// Rows [r0, r0 + R) (R <= 8) as one group.
static void fold_group(const AttnRows& q, int r0, int R, const float* k, int64_t ldk,
                       const float* v, int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    const int D = q.D;
    alignas(32) float qt[8 * kGroupMaxD];     // Q^T: [D][8 lanes], pre-scaled, lanes >= R zero
    alignas(32) float kbuf[16 * kGroupMaxD];  // a contiguous, zero-padded copy of a K tile
    alignas(32) float pt[16 * 8];             // P^T of the tile: [key][lane]
    alignas(32) float corr_s[8];
    for (int d = 0; d < D; ++d)
        for (int r = 0; r < 8; ++r)
            qt[8 * d + r] = r < R ? q.q[(r0 + r) * q.ldq + d] * q.scale : 0.0f;
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 live = _mm256_castsi256_ps(lane_mask(R));
    const __m256 neg_inf = _mm256_set1_ps(-__builtin_inff());
    __m256 m = _mm256_blendv_ps(neg_inf, _mm256_maskload_ps(st.m + r0, lane_mask(R)), live);
    __m256 l = _mm256_maskload_ps(st.l + r0, lane_mask(R));
    const bool capped = q.softcap > 0.0f;
    const __m256 cap = _mm256_set1_ps(q.softcap), inv_cap = _mm256_set1_ps(1.0f / q.softcap);
    const int64_t pos0 = q.pos0 + r0 * q.pos_step;  // position of lane 0
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
        const int nk = n - t0 < 16 ? (int)(n - t0) : 16;
        // Lanes (rows) that see key j: r >= j - pos0 (causal), r < j - pos0 + window.
        __m256 km[16];
        __m256 any = _mm256_setzero_ps();
        for (int c = 0; c < 16; ++c) {
            const int64_t rel = j0 + t0 + c - pos0;
            __m256 mk = c < nk ? live : _mm256_setzero_ps();
            if (q.pos_step == 0) {  // every lane at position pos0
                if ((q.causal && rel > 0) || (q.window > 0 && rel + q.window <= 0))
                    mk = _mm256_setzero_ps();
            } else if (q.causal) {
                const int lo = rel < 0 ? -1 : (rel > 8 ? 8 : (int)rel - 1);
                mk = _mm256_and_ps(
                    mk, _mm256_castsi256_ps(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(lo))));
            }
            if (q.pos_step != 0 && q.window > 0) {
                const int64_t h = rel + q.window;
                const int hi = h < 0 ? 0 : (h > 8 ? 8 : (int)h);
                mk = _mm256_and_ps(
                    mk, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(hi), iota)));
            }
            km[c] = mk;
            any = _mm256_or_ps(any, mk);
        }
        if (_mm256_testz_ps(any, any)) continue;
        const float* kc = k + t0 * ldk;
        if (ldk != D || nk < 16) {
            for (int c = 0; c < 16; ++c)
                for (int d = 0; d < D; d += 8) {
                    const __m256 x =
                        c < nk ? load_part(kc + c * ldk + d, D - d) : _mm256_setzero_ps();
                    if (D - d >= 8)
                        _mm256_storeu_ps(kbuf + c * D + d, x);
                    else
                        _mm256_maskstore_ps(kbuf + c * D + d, lane_mask(D - d), x);
                }
            kc = kbuf;
        }
        __m256 sc[16];
        for (int h = 0; h < 16; h += 8) {
            switch (D) {
            case 64: qk_fixed<64>(qt, kc + h * D, sc + h); break;
            case 128: qk_fixed<128>(qt, kc + h * D, sc + h); break;
            case 256: qk_fixed<256>(qt, kc + h * D, sc + h); break;
            default: qk_any(qt, kc + h * D, D, sc + h); break;
            }
        }
        __m256 mt = neg_inf;
        for (int c = 0; c < 16; ++c) {
            if (capped) sc[c] = _mm256_mul_ps(cap, tanh_ps(_mm256_mul_ps(sc[c], inv_cap)));
            sc[c] = _mm256_blendv_ps(neg_inf, sc[c], km[c]);
            mt = _mm256_max_ps(mt, sc[c]);
        }
        const __m256 m_new = _mm256_max_ps(m, mt);
        // Rows that have seen no key yet keep m = -inf: subtract 0 there instead (no inf - inf).
        const __m256 m_sub =
            _mm256_blendv_ps(m_new, _mm256_setzero_ps(), _mm256_cmp_ps(m_new, neg_inf, _CMP_EQ_OQ));
        const __m256 corr = exp_ps(_mm256_sub_ps(m, m_sub));
        __m256 sum = _mm256_setzero_ps();
        for (int c = 0; c < nk; ++c) {
            const __m256 e = exp_ps(_mm256_sub_ps(sc[c], m_sub));
            _mm256_store_ps(pt + 8 * c, e);
            sum = _mm256_add_ps(sum, e);
        }
        l = _mm256_fmadd_ps(l, corr, sum);
        m = m_new;
        _mm256_store_ps(corr_s, corr);
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
    _mm256_maskstore_ps(st.m + r0, lane_mask(R), m);
    _mm256_maskstore_ps(st.l + r0, lane_mask(R), l);
}

}  // namespace

void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st) {
    // The canonical row partition (attention.h): groups of 16 rows, each as two 8-lane groups
    // (a row's lane computes the same bits in any group), the rest on the row path.
    int r = 0;
    if (q.D <= kGroupMaxD)
        for (; q.rows - r >= kAttnGroupMinRows; r += kAttnGroupRows) {
            const int R = q.rows - r < kAttnGroupRows ? q.rows - r : kAttnGroupRows;
            for (int h = 0; h < R; h += 8)
                fold_group(q, r + h, R - h < 8 ? R - h : 8, k, ldk, v, ldv, j0, n, st);
        }
    if (r < q.rows) attn_fold_rows(q, r, q.rows, k, ldk, v, ldv, j0, n, st);
}

}  // namespace avx2
}  // namespace pylm
