// Causal multi-head attention with grouped-query heads, for training: a flash-style forward
// that keeps only the log-sum-exp of each score row, and a backward that recomputes the
// attention weights from it (FlashAttention-2, Dao 2023, algorithms 1 and 2, with one query
// block of a few rows against all earlier keys: T is a training context, so a score row of T
// floats per block fits in L1/L2 and no key tiling is needed).
//
//   S = scale * Q K^T (causal: key j <= query i),  P = softmax_rows(S),  O = P V
//   lse_i = log sum_j exp(S_ij)                      (saved; P_ij = exp(S_ij - lse_i))
//   backward, with delta_i = dO_i . O_i:
//     dV = P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  dQ = scale dS K,  dK = scale dS^T Q
//
// Layout: B sequences of T tokens; row n = b * T + t. Query head h reads key/value head
// h / (H / Hkv) (grouped-query attention; H % Hkv == 0). q/k/v (and dq/dk/dv) are rows of stride
// ld with head h at column offset h * D inside each one's own base pointer, so one fused
// QKV projection [N, (H + 2 Hkv) D] serves directly. o and do are [N, ldo] with H heads.
//   q, dq [B*T, ld] (H heads)   k, v, dk, dv [B*T, ld] (Hkv heads)   o, do [B*T, ldo]
//   lse [B, H, T]
#pragma once
#include <cstdint>

namespace pylm {
namespace train {

struct AttnShape {
    int64_t B, T;
    int H, Hkv, D;
    int64_t ld, ldo;
    float scale;  // usually 1 / sqrt(D)
};

void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* o,
                   float* lse, int nthreads = 0);
// dq, dk, dv are overwritten (every row and head of them is written).
void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v,
                   const float* o, const float* lse, const float* dout, float* dq, float* dk,
                   float* dv, int nthreads = 0);

// Scratch floats per task. Transposed heads (Qt, Kt, ... [D, Tp]) have rows of Tp floats: T
// rounded up to 16, plus 16, so that the row stride is an odd number of cache lines (a
// power-of-two stride maps all D rows onto a few L1 sets) and a tile of up to 16 columns
// starting below T stays inside the row (the padding is zero).
// (static inline: these are also used inside the per-ISA translation units.)
static inline int64_t attn_padded_T(int64_t T) { return (T + 15) / 16 * 16 + 16; }
// Both passes keep scores / weights for a chunk of this many query rows at a time (a multiple
// of every ISA's tile height): the score products sweep the chunk's query tiles per key tile
// (the Kt panel stays in L1), and the backward's dK / dV products, which read a few P / dS
// columns and the chunk's Q / dO rows per key tile, find them in L1.
constexpr int64_t kAttnChunk = 48;
static inline int64_t attn_chunk_rows(int64_t T) { return T < kAttnChunk ? T : kAttnChunk; }
// Forward: Kt [D, Tp], Q, V contiguous [Tp, D], scores [chunk rows, Tp]. Backward: Kt, Vt
// [D, Tp], K, Q, dO contiguous [Tp, D], P and dS [chunk rows, Tp], delta [Tp], dK and dV
// accumulators [Tp, D].
static inline int64_t attn_fwd_scratch(int64_t T, int D) {
    return attn_padded_T(T) * (3 * D + attn_chunk_rows(T));
}
static inline int64_t attn_bwd_scratch(int64_t T, int D) {
    return attn_padded_T(T) * (7 * D + 2 * attn_chunk_rows(T) + 1);
}

}  // namespace train

// ---- per-ISA kernels (single-threaded) ----
// attn_fwd_head: one (sequence, query head); q/k/v/o point at that head's row 0, lse at its [T].
// attn_bwd_kv: one (sequence, kv head) and its G = H / Hkv query heads: q/o/do/dq/lse point at
// the group's first query head (heads g at +g*D, lse at +g*T); k/v/dk/dv at the kv head.
#define PYLM_TRAIN_ATTN_DECLARE(ns)                                                          \
    namespace ns {                                                                           \
    namespace train {                                                                        \
    void attn_fwd_head(const pylm::train::AttnShape& s, const float* q, const float* k,      \
                       const float* v, float* o, float* lse, float* scratch);                \
    void attn_bwd_kv(const pylm::train::AttnShape& s, int G, const float* q, const float* k, \
                     const float* v, const float* o, const float* lse, const float* dout,    \
                     float* dq, float* dk, float* dv, float* scratch);                       \
    }                                                                                        \
    }
PYLM_TRAIN_ATTN_DECLARE(ref)
PYLM_TRAIN_ATTN_DECLARE(avx2)
PYLM_TRAIN_ATTN_DECLARE(avx512)
#undef PYLM_TRAIN_ATTN_DECLARE

}  // namespace pylm
