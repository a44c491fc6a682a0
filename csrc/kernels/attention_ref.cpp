// Scalar attention fold: the online softmax one key at a time, in the plainest form.
// The oracle for the SIMD folds and the fallback on CPUs without AVX2. See attention.h.
//
// q rows [rows, D] (ldq), keys/values: a run of n rows (ldk / ldv) at absolute indices j0...
#include <cmath>

#include "kernels/attention.h"

namespace pylm {
namespace ref {

void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st) {
    const int D = q.D;
    for (int r = 0; r < q.rows; ++r) {
        const int64_t p = q.pos0 + r * q.pos_step;
        const float* qr = q.q + r * q.ldq;
        float* acc = st.acc + static_cast<int64_t>(r) * D;
        float m = st.m[r], l = st.l[r];
        for (int64_t c = 0; c < n; ++c) {
            const int64_t j = j0 + c;
            if (q.causal && j > p) break;                     // keys past the query
            if (q.window > 0 && p - j >= q.window) continue;  // keys left of the window
            const float* kc = k + c * ldk;
            float s = 0.0f;
            for (int d = 0; d < D; ++d) s += qr[d] * kc[d];
            s *= q.scale;
            if (q.softcap > 0.0f) s = q.softcap * std::tanh(s / q.softcap);
            // New max: rescale what was accumulated so far by exp(m_old - m_new).
            if (s > m) {
                const float corr = std::exp(m - s);
                l *= corr;
                for (int d = 0; d < D; ++d) acc[d] *= corr;
                m = s;
            }
            const float w = std::exp(s - m);
            l += w;
            const float* vc = v + c * ldv;
            for (int d = 0; d < D; ++d) acc[d] += w * vc[d];
        }
        st.m[r] = m;
        st.l[r] = l;
    }
}

}  // namespace ref
}  // namespace pylm
