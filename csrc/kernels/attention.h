// Fused causal attention for one sequence, grouped-query heads, online softmax.
//
// out[t, h, :] = sum_j softmax_j(score(t, h, j)) * v[j, h / G, :]   (G = Hq / Hkv)
// score(t, h, j) = cap(scale * q[t, h, :] . k[j, h / G, :]),  cap(x) = softcap * tanh(x / softcap)
// over the keys j in [0, S) that query t sees: with p = q_pos0 + t its absolute position,
//   causal: j <= p;   window > 0: also p - j < window (the last `window` positions, itself
//   included: llama.cpp's sliding window; the Python API allows it only with causal).
// A query that sees no key gets zeros.
//
// Flash-style (Dao et al., 2022) on the CPU: keys are visited in tiles with a running max m,
// running sum l and an unnormalized accumulator per query row, so no [T, S] score matrix
// exists. Prefill splits the work over (16-query tile, head) units; decode (T == 1) over
// (kv head, key chunk) units whose partial states are merged. Nothing depends on the thread
// count, so results are bit-identical for any number of threads.
//
// Shapes (all float32, unit stride along D; the other strides are free so K/V may be slices
// of a larger cache): q [T, Hq, D], k [S, Hkv, D], v [S, Hkv, D], out [T, Hq, D].
#pragma once
#include <cstdint>

namespace pylm {

struct AttnArgs {
    const float* q;  // [T, Hq, D]: (t, h, d) at q[t * q_st + h * q_sh + d]
    const float* k;  // [S, Hkv, D]
    const float* v;  // [S, Hkv, D]
    float* out;      // [T, Hq, D]
    int64_t q_st, q_sh, k_st, k_sh, v_st, v_sh, o_st, o_sh;  // strides in floats
    int64_t T, S;
    int Hq, Hkv, D;
    float scale, softcap;  // softcap <= 0: off
    int64_t q_pos0;        // absolute position of query 0 (usually S - T)
    int64_t window;        // <= 0: no sliding window
    bool causal;
};

// Contiguous arrays, causal. nthreads <= 0: the global default.
void attention_f32(const float* q /*[T, Hq, D]*/, const float* k /*[S, Hkv, D]*/,
                   const float* v /*[S, Hkv, D]*/, float* out /*[T, Hq, D]*/, int64_t T, int64_t S,
                   int Hq, int Hkv, int D, float scale, int64_t q_pos0, int64_t window,
                   float softcap, int nthreads);

// The general form (strides, non-causal). Contract: Hq % Hkv == 0, D >= 1.
void attention(const AttnArgs& a, int nthreads);

// ---- building blocks (the paged engine folds one contiguous run of keys per page) ----

// A block of query rows: row r is at position pos0 + r * pos_step, with pos_step 1 (consecutive
// queries of one head) or 0 (the heads of one kv group at one position: GQA decode).
struct AttnRows {
    const float* q;  // row r at q + r * ldq, D floats
    int64_t ldq;
    int rows, D;
    int64_t pos0, pos_step;
    float scale, softcap;
    int64_t window;
    bool causal;
};

// Online-softmax state of those rows: running max, running sum, unnormalized output.
struct AttnState {
    float* m;    // [rows], starts at -inf
    float* l;    // [rows], starts at 0
    float* acc;  // [rows, D] (row stride D), starts at 0
};

void attn_state_init(const AttnRows& q, AttnState& st);
// out row r (at out + r * ldo) = acc / l, or zeros when the row saw no key.
void attn_state_finish(const AttnRows& q, const AttnState& st, float* out, int64_t ldo);
// The same rows' states over disjoint key ranges, merged in order into out (row r at
// out + r * ldo): m = max m_c, l = sum l_c e^(m_c - m), out = sum acc_c e^(m_c - m) / l, zeros
// for a row that saw no key (flash-decoding's merge; the scalar exp of the folds).
void attn_states_merge(int rows, int D, const AttnState* states, int64_t n, float* out,
                       int64_t ldo);

// Dispatched on the active ISA (the per-ISA variants are declared below).
void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st);

// Folds keys with absolute indices [j0, j0 + n) into the state; key c of the run is at
// k + c * ldk (v + c * ldv). Masking (causal / window) uses the absolute indices, so runs may
// be visited in any order and split anywhere (the float result depends on the split).
//
// Cross-ISA determinism: the three variants perform the same float operations in the same
// order, so they return the same bits. The canonical evaluation (AVX-512's natural structure)
// is written out in attention_ref.cpp. Its row partition: when D <= kAttnGroupMaxD, rows go in
// groups of kAttnGroupRows while at least kAttnGroupMinRows remain ("group" path: lanes = rows,
// 16-key tiles); the rest one row at a time ("row" path: key tiles of 64 / 32 / 16 for
// D <= 64 / <= 128 / larger, 16-lane dot products + a fixed tree).
constexpr int kAttnGroupRows = 16;
constexpr int kAttnGroupMinRows = 6;
constexpr int kAttnGroupMaxD = 256;
namespace ref {
void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st);
}
namespace avx2 {
void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st);
}
namespace avx512 {
void attn_fold_keys(const AttnRows& q, const float* k, int64_t ldk, const float* v, int64_t ldv,
                    int64_t j0, int64_t n, AttnState& st);
}

}  // namespace pylm
