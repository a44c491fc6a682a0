// Scalar attention fold: the fallback on CPUs without AVX2, and the CANONICAL evaluation that
// every ISA performs bit for bit (attention.h). It is AVX-512's natural structure written out
// one lane at a time, with std::fmaf wherever the SIMD code fuses and vmath_ref.h's tanh and
// exp (exp = vr_exp_ftz: 0 below FLT_MIN, so masked -inf scores never underflow).
//
// Rows are partitioned as in attention.h: groups of up to 16 rows (lanes = rows) while at least
// 6 remain and D <= 256, the rest one row at a time.
//
// Group path, per row (lane), keys in tiles of 16 from the start of the run (nk <= 16 keys):
//   qs[d] = q[d] * scale;  s_c = fma chain over d = 0..D-1 of k_c[d] * qs[d] (from 0);
//   capped: s_c = cap * tanh(s_c * (1 / cap));  masked keys: s_c = -inf;
//   m_new = max(m, max_c s_c);  ms = m_new, or 0 while m_new = -inf;  corr = exp(m - ms);
//   e_c = exp(s_c - ms);  sum = e_0 + e_1 + ... (in order, from 0);  l = fma(l, corr, sum);
//   acc[d] = acc[d] * corr, then acc[d] = fma(e_c, v_c[d], acc[d]) for c = 0..nk-1.
// Row path, per row, keys in tiles of Bk = 64 / 32 / 16 (D <= 64 / <= 128 / larger) from the
// start of the run; the row's visible keys in the tile are [ca, cb):
//   s_c = tree16(lane l = fma chain over d = l, l+16, ... of q[d] * k_c[d], zero-padded to a
//         multiple of 16) * scale, capped as above; keys outside [ca, cb) are -inf;
//   m_new = max(m, max_c s_c);  e_c = exp(s_c - m_new) for the 16-key blocks from ca & ~15;
//   sum lane l = e of the blocks' key l, in block order;  corr = exp(m - m_new);
//   l = l * corr + tree16(sum)  (a multiply, then an add);
//   acc[d] = (acc[d] * corr + e_ca v_ca[d] + e_ca+2 v_ca+2[d] + ...)   (fma chain)
//          + (e_ca+1 v_ca+1[d] + e_ca+3 v_ca+3[d] + ...)              (fma chain from 0).
// tree16 is the fixed 16-lane sum of vmath_ref.h. Keys are visited in order inside a run.
#include <cmath>

#include "kernels/attention.h"
#include "kernels/vmath_ref.h"

namespace pylm {
namespace ref {

namespace {

using vref::vr_exp_ftz;
using vref::vr_hsum16;
using vref::vr_tanh;

// Does the query at position p see the key at absolute index j?
inline bool visible(const AttnRows& q, int64_t p, int64_t j) {
    if (q.causal && j > p) return false;
    if (q.window > 0 && p - j >= q.window) return false;
    return true;
}

inline float cap_score(const AttnRows& q, float s) {
    return q.softcap > 0.0f ? q.softcap * vr_tanh(s * (1.0f / q.softcap)) : s;
}

// Row r of the group path (its lane; other lanes never influence it).
void fold_group_row(const AttnRows& q, int r, const float* k, int64_t ldk, const float* v,
                    int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    const int D = q.D;
    const int64_t p = q.pos0 + r * q.pos_step;
    const float* qr = q.q + r * q.ldq;
    float qs[kAttnGroupMaxD];
    for (int d = 0; d < D; ++d) qs[d] = qr[d] * q.scale;
    float* acc = st.acc + static_cast<int64_t>(r) * D;
    float m = st.m[r], l = st.l[r];
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
        const int nk = n - t0 < 16 ? static_cast<int>(n - t0) : 16;
        float s[16];
        bool any = false;
        for (int c = 0; c < nk; ++c) {
            if (!visible(q, p, j0 + t0 + c)) {
                s[c] = -INFINITY;
                continue;
            }
            const float* kc = k + (t0 + c) * ldk;
            float a = 0.0f;
            for (int d = 0; d < D; ++d) a = std::fmaf(kc[d], qs[d], a);
            s[c] = cap_score(q, a);
            any = true;
        }
        // A tile this row does not see changes nothing (corr = 1 / 0 with nothing added), so
        // skipping it is bit-identical to the SIMD lanes that process it inside a group.
        if (!any) continue;
        float mt = -INFINITY;
        for (int c = 0; c < nk; ++c) mt = mt > s[c] ? mt : s[c];
        const float m_new = m > mt ? m : mt;
        const float ms = m_new == -INFINITY ? 0.0f : m_new;
        const float corr = vr_exp_ftz(m - ms);
        float sum = 0.0f;
        for (int c = 0; c < nk; ++c) {
            s[c] = vr_exp_ftz(s[c] - ms);
            sum = sum + s[c];
        }
        l = std::fmaf(l, corr, sum);
        m = m_new;
        for (int d = 0; d < D; ++d) {
            float o = acc[d] * corr;
            for (int c = 0; c < nk; ++c) o = std::fmaf(s[c], v[(t0 + c) * ldv + d], o);
            acc[d] = o;
        }
    }
    st.m[r] = m;
    st.l[r] = l;
}

// The canonical 16-lane dot product q . k (lane = d % 16, zero padding) times scale.
inline float dot16(const float* q, const float* k, int D) {
    float lane[16] = {};
    for (int d0 = 0; d0 < D; d0 += 16)
        for (int i = 0; i < 16; ++i) {
            const bool in = d0 + i < D;
            lane[i] = std::fmaf(in ? q[d0 + i] : 0.0f, in ? k[d0 + i] : 0.0f, lane[i]);
        }
    return vr_hsum16(lane);
}

void fold_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk, const float* v,
               int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    const int D = q.D;
    const int64_t Bk = D <= 64 ? 64 : (D <= 128 ? 32 : 16);
    float s[64];
    for (int64_t t0 = 0; t0 < n; t0 += Bk) {
        const int64_t tn = n - t0 < Bk ? n - t0 : Bk;
        const int64_t jt = j0 + t0;
        const float* kt = k + t0 * ldk;
        const float* vt = v + t0 * ldv;
        for (int r = ra; r < rb; ++r) {
            const int64_t p = q.pos0 + r * q.pos_step;
            int64_t ca = 0, cb = tn;
            if (q.causal && p - jt + 1 < cb) cb = p - jt + 1;
            if (q.window > 0 && p - q.window + 1 - jt > ca) ca = p - q.window + 1 - jt;
            if (ca >= cb) continue;
            const float* qr = q.q + r * q.ldq;
            const int64_t b0 = ca & ~int64_t(15);
            const int64_t b1 = (cb + 15) & ~int64_t(15);  // end of the last 16-key block
            float mt = -INFINITY;
            for (int64_t c = b0; c < b1; ++c) {
                s[c] = -INFINITY;
                if (c < ca || c >= cb) continue;
                s[c] = cap_score(q, dot16(qr, kt + c * ldk, D) * q.scale);
                mt = mt > s[c] ? mt : s[c];
            }
            const float m_old = st.m[r];
            const float m_new = mt > m_old ? mt : m_old;
            float sum[16] = {};
            for (int64_t c = b0; c < b1; ++c) {
                s[c] = vr_exp_ftz(s[c] - m_new);
                sum[c % 16] += s[c];
            }
            const float corr = vr_exp_ftz(m_old - m_new);
            st.l[r] = st.l[r] * corr + vr_hsum16(sum);
            st.m[r] = m_new;
            float* acc = st.acc + static_cast<int64_t>(r) * D;
            for (int d = 0; d < D; ++d) {
                float o = acc[d] * corr, o2 = 0.0f;
                int64_t c = ca;
                for (; c + 1 < cb; c += 2) {
                    o = std::fmaf(s[c], vt[c * ldv + d], o);
                    o2 = std::fmaf(s[c + 1], vt[(c + 1) * ldv + d], o2);
                }
                if (c < cb) o = std::fmaf(s[c], vt[c * ldv + d], o);
                acc[d] = o + o2;
            }
        }
    }
}

}  // namespace

void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st) {
    int r = 0;
    if (q.D <= kAttnGroupMaxD)
        for (; q.rows - r >= kAttnGroupMinRows; r += kAttnGroupRows) {
            const int R = q.rows - r < kAttnGroupRows ? q.rows - r : kAttnGroupRows;
            for (int i = 0; i < R; ++i) fold_group_row(q, r + i, k, ldk, v, ldv, j0, n, st);
        }
    if (r < q.rows) fold_rows(q, r, q.rows, k, ldk, v, ldv, j0, n, st);
}

}  // namespace ref
}  // namespace pylm
