// Attention dispatcher: splits the work into independent units, runs them on the thread pool,
// and folds each unit's keys with the active ISA.
//
// Prefill (T > 1): a unit is up to kRowsPerUnit consecutive queries of one head (heaviest causal
// tiles first); its state (running max/sum, [rows, D] accumulator) lives in per-thread scratch
// and its keys are one contiguous run [lo, hi] of the kv head h / (Hq / Hkv).
// Decode (T == 1): a unit is the G = Hq / Hkv query heads of one kv head (so K/V stream through
// the cache once, not G times) over one chunk of kDecodeChunk keys (flash-decoding: long
// contexts still spread over threads); the chunks' states are merged at the end. Chunking
// depends on S only, so results never depend on the thread count.
#include "kernels/attention.h"

#include <cmath>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"
#include "kernels/vmath_ref.h"

namespace pylm {

namespace {

constexpr int64_t kRowsPerUnit = 16;
constexpr int64_t kDecodeChunk = 256;

using FoldFn = void (*)(const AttnRows&, const float*, int64_t, const float*, int64_t, int64_t,
                        int64_t, AttnState&);

FoldFn fold_for(Isa isa) {
    switch (isa) {
    case Isa::Avx512: return avx512::attn_fold_keys;
    case Isa::Avx2: return avx2::attn_fold_keys;
    default: return ref::attn_fold_keys;
    }
}

// Queries [t0, t1) of head h, with scratch for their state (rows * (D + 2) floats).
void run_unit(const AttnArgs& a, FoldFn fold, int h, int64_t t0, int64_t t1, float* scratch) {
    AttnRows q;
    q.q = a.q + t0 * a.q_st + h * a.q_sh;
    q.ldq = a.q_st;
    q.rows = static_cast<int>(t1 - t0);
    q.D = a.D;
    q.pos0 = a.q_pos0 + t0;
    q.pos_step = 1;
    q.scale = a.scale;
    q.softcap = a.softcap;
    q.window = a.window;
    q.causal = a.causal;
    AttnState st;
    st.m = scratch;
    st.l = scratch + q.rows;
    st.acc = scratch + 2 * q.rows;
    attn_state_init(q, st);
    // The union of the rows' key ranges: [lo, hi] (the fold masks per row inside it).
    int64_t lo = 0, hi = a.S - 1;
    if (a.causal && q.pos0 + q.rows - 1 < hi) hi = q.pos0 + q.rows - 1;
    if (a.window > 0 && q.pos0 - a.window + 1 > lo) lo = q.pos0 - a.window + 1;
    if (lo <= hi) {
        const int kvh = h / (a.Hq / a.Hkv);
        fold(q, a.k + lo * a.k_st + kvh * a.k_sh, a.k_st, a.v + lo * a.v_st + kvh * a.v_sh, a.v_st,
             lo, hi - lo + 1, st);
    }
    attn_state_finish(q, st, a.out + t0 * a.o_st + h * a.o_sh, a.o_st);
}

}  // namespace

void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st) {
    fold_for(active_isa())(q, k, ldk, v, ldv, j0, n, st);
}

void attn_state_init(const AttnRows& q, AttnState& st) {
    for (int r = 0; r < q.rows; ++r) {
        st.m[r] = -INFINITY;
        st.l[r] = 0.0f;
    }
    const int64_t n = static_cast<int64_t>(q.rows) * q.D;
    for (int64_t i = 0; i < n; ++i) st.acc[i] = 0.0f;
}

void attn_state_finish(const AttnRows& q, const AttnState& st, float* out, int64_t ldo) {
    for (int r = 0; r < q.rows; ++r) {
        const float* acc = st.acc + static_cast<int64_t>(r) * q.D;
        float* o = out + r * ldo;
        const float inv = st.l[r] > 0.0f ? 1.0f / st.l[r] : 0.0f;
        for (int d = 0; d < q.D; ++d) o[d] = acc[d] * inv;
    }
}

void attn_states_merge(int rows, int D, const AttnState* states, int64_t n, float* out,
                       int64_t ldo) {
    for (int r = 0; r < rows; ++r) {
        float* o = out + r * ldo;
        float m = -INFINITY;
        for (int64_t c = 0; c < n; ++c) m = states[c].m[r] > m ? states[c].m[r] : m;
        for (int d = 0; d < D; ++d) o[d] = 0.0f;
        if (m == -INFINITY) continue;  // no visible key
        float l = 0.0f;
        for (int64_t c = 0; c < n; ++c) {
            if (states[c].m[r] == -INFINITY) continue;
            const float w = vref::vr_exp_ftz(states[c].m[r] - m);  // the folds' exp, not libm
            l += states[c].l[r] * w;
            const float* acc = states[c].acc + static_cast<int64_t>(r) * D;
            for (int d = 0; d < D; ++d) o[d] += acc[d] * w;
        }
        const float inv = 1.0f / l;
        for (int d = 0; d < D; ++d) o[d] *= inv;
    }
}

namespace {

void attention_prefill(const AttnArgs& a, FoldFn fold, int nthreads) {
    const int64_t n_tiles = (a.T + kRowsPerUnit - 1) / kRowsPerUnit;
    const int64_t units = n_tiles * a.Hq;
    if (nthreads > units) nthreads = static_cast<int>(units);
    const int64_t per_thread = kRowsPerUnit * (a.D + 2);
    std::vector<float> scratch(static_cast<size_t>(per_thread * nthreads));
    parallel_for(units, 1, nthreads, [&](int64_t b, int64_t e, int tid) {
        float* s = scratch.data() + tid * per_thread;
        for (int64_t u = b; u < e; ++u) {
            // Last query tiles first: with a causal mask they see the most keys.
            const int64_t tile = n_tiles - 1 - u / a.Hq;
            const int h = static_cast<int>(u % a.Hq);
            const int64_t t0 = tile * kRowsPerUnit;
            const int64_t t1 = t0 + kRowsPerUnit < a.T ? t0 + kRowsPerUnit : a.T;
            run_unit(a, fold, h, t0, t1, s);
        }
    });
}

void attention_decode(const AttnArgs& a, FoldFn fold, int nthreads) {
    const int G = a.Hq / a.Hkv, D = a.D;
    const int64_t p = a.q_pos0;
    int64_t lo = 0, hi = a.S - 1;
    if (a.causal && p < hi) hi = p;
    if (a.window > 0 && p - a.window + 1 > lo) lo = p - a.window + 1;
    const int64_t nkeys = hi >= lo ? hi - lo + 1 : 0;
    const int64_t n_chunks = nkeys > 0 ? (nkeys + kDecodeChunk - 1) / kDecodeChunk : 1;
    const int64_t units = a.Hkv * n_chunks;
    const int64_t per_unit = static_cast<int64_t>(G) * (D + 2);
    std::vector<float> states(static_cast<size_t>(per_unit * units));
    auto state_of = [&](int64_t u) {
        AttnState st;
        st.m = states.data() + u * per_unit;
        st.l = st.m + G;
        st.acc = st.l + G;
        return st;
    };
    auto rows_of = [&](int g) {
        AttnRows q;
        q.q = a.q + static_cast<int64_t>(g) * G * a.q_sh;
        q.ldq = a.q_sh;
        q.rows = G;
        q.D = D;
        q.pos0 = p;
        q.pos_step = 0;
        q.scale = a.scale;
        q.softcap = a.softcap;
        q.window = a.window;
        q.causal = a.causal;
        return q;
    };
    parallel_for(units, 1, nthreads, [&](int64_t b, int64_t e, int) {
        for (int64_t u = b; u < e; ++u) {
            const int g = static_cast<int>(u / n_chunks);
            const int64_t j0 = lo + (u % n_chunks) * kDecodeChunk;
            const int64_t n = hi + 1 - j0 < kDecodeChunk ? hi + 1 - j0 : kDecodeChunk;
            const AttnRows q = rows_of(g);
            AttnState st = state_of(u);
            attn_state_init(q, st);
            if (n > 0)
                fold(q, a.k + j0 * a.k_st + g * a.k_sh, a.k_st, a.v + j0 * a.v_st + g * a.v_sh,
                     a.v_st, j0, n, st);
        }
    });
    std::vector<AttnState> chunks(static_cast<size_t>(n_chunks));
    for (int g = 0; g < a.Hkv; ++g) {
        for (int64_t c = 0; c < n_chunks; ++c) chunks[c] = state_of(g * n_chunks + c);
        float* out = a.out + static_cast<int64_t>(g) * G * a.o_sh;
        attn_states_merge(G, D, chunks.data(), n_chunks, out, a.o_sh);
    }
}

}  // namespace

void attention(const AttnArgs& a, int nthreads) {
    if (a.T <= 0 || a.Hq <= 0 || a.D <= 0) return;
    const FoldFn fold = fold_for(active_isa());
    if (nthreads <= 0) nthreads = default_threads();
    if (a.T == 1)
        attention_decode(a, fold, nthreads);
    else
        attention_prefill(a, fold, nthreads);
}

void attention_f32(const float* q, const float* k, const float* v, float* out, int64_t T, int64_t S,
                   int Hq, int Hkv, int D, float scale, int64_t q_pos0, int64_t window,
                   float softcap, int nthreads) {
    AttnArgs a;
    a.q = q;
    a.k = k;
    a.v = v;
    a.out = out;
    a.q_sh = a.o_sh = D;
    a.q_st = a.o_st = static_cast<int64_t>(Hq) * D;
    a.k_sh = a.v_sh = D;
    a.k_st = a.v_st = static_cast<int64_t>(Hkv) * D;
    a.T = T;
    a.S = S;
    a.Hq = Hq;
    a.Hkv = Hkv;
    a.D = D;
    a.scale = scale;
    a.softcap = softcap;
    a.q_pos0 = q_pos0;
    a.window = window;
    a.causal = true;
    attention(a, nthreads);
}

}  // namespace pylm
