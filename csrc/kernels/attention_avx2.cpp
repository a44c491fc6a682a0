// AVX2 + FMA attention fold (see attention.h), the 8-lane twin of attention_avx512.cpp:
// keys in tiles of Bk (64 / 32 / 16 for D <= 64 / 128 / more), per row: scores 8 keys at a
// time (8 dot-product accumulators, one transpose-add tree -> a vector of 8 scores), tile max,
// exp, one rescale per tile, then acc[0:D] += p_c * v_c with up to 8 ymm of the row in registers.
#include <immintrin.h>

#include "kernels/attention.h"

namespace pylm {
namespace avx2 {

namespace {

// Lanes [0, n) set (n clamped to 0..8), for maskload / maskstore.
static inline __m256i lane_mask(int64_t n) {
    const int c = n <= 0 ? 0 : (n >= 8 ? 8 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// exp(x) for x <= 88 (Cephes expf polynomial, ~1 ulp); x < -87.3 (incl. -inf) gives 0.
static inline __m256 exp_ps(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654475f);
    const __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

// tanh(x) (Cephes tanhf): odd polynomial for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1).
static inline __m256 tanh_ps(__m256 x) {
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    const __m256 e = exp_ps(_mm256_add_ps(ax, ax));
    const __m256 big = _mm256_or_ps(
        sign, _mm256_sub_ps(_mm256_set1_ps(1.0f),
                            _mm256_div_ps(_mm256_set1_ps(2.0f),
                                          _mm256_add_ps(e, _mm256_set1_ps(1.0f)))));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

static inline float hmax(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

static inline float hsum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

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

static inline __m256 load_part(const float* p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(n));
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

// One row at a time (rows [ra, rb)): for decode-sized blocks, where a lane per row would idle.
static void fold_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk,
                      const float* v, int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
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
                const __m256 valid = _mm256_castsi256_ps(_mm256_and_si256(
                    _mm256_cmpgt_epi32(iota, lo), _mm256_cmpgt_epi32(hi, iota)));
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


// ---- row groups: one lane per query row (8 rows), keys 16 at a time ----
//
// Scores come out transposed, S^T[c] = a vector over the rows for key c, from Q^T packed once
// per fold (pre-scaled) and broadcast K elements, so the running max / sum / rescale factor
// are vectors over rows and nothing is reduced across lanes. PV reuses each V load for up to
// 4 rows.

constexpr int kGroupMinRows = 4;  // below this, the single-row path wastes fewer lanes
constexpr int kGroupMaxD = 256;   // Q^T and K-tile buffers live on the stack

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
                mk = _mm256_and_ps(mk, _mm256_castsi256_ps(
                                           _mm256_cmpgt_epi32(iota, _mm256_set1_epi32(lo))));
            }
            if (q.pos_step != 0 && q.window > 0) {
                const int64_t h = rel + q.window;
                const int hi = h < 0 ? 0 : (h > 8 ? 8 : (int)h);
                mk = _mm256_and_ps(mk, _mm256_castsi256_ps(
                                           _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), iota)));
            }
            km[c] = mk;
            any = _mm256_or_ps(any, mk);
        }
        if (_mm256_testz_ps(any, any)) continue;
        const float* kc = k + t0 * ldk;
        if (ldk != D || nk < 16) {
            for (int c = 0; c < 16; ++c)
                for (int d = 0; d < D; d += 8) {
                    const __m256 x = c < nk ? load_part(kc + c * ldk + d, D - d) : _mm256_setzero_ps();
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
        const __m256 m_sub = _mm256_blendv_ps(m_new, _mm256_setzero_ps(),
                                              _mm256_cmp_ps(m_new, neg_inf, _CMP_EQ_OQ));
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
    int r = 0;
    if (q.D <= kGroupMaxD)
        for (; q.rows - r >= kGroupMinRows; r += 8) {
            const int R = q.rows - r < 8 ? q.rows - r : 8;
            fold_group(q, r, R, k, ldk, v, ldv, j0, n, st);
        }
    if (r < q.rows) fold_rows(q, r, q.rows, k, ldk, v, ldv, j0, n, st);
}

}  // namespace avx2
}  // namespace pylm
