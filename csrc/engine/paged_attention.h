// Attention of tokens' query heads over a sequence's paged K/V (decode and prefill alike).
//
// A (token, kv head) pair: the g = Hq / Hkv query heads that share the kv head, so each K/V row
// is read once for the whole group; a call takes up to kAttnRowsPerTask such pairs of one
// sequence and kv head. The page walk is here; the math is the fused attention kernel's
// online-softmax fold (kernels/attention.h), one contiguous run per page.
#pragma once
#include <cstdint>

#include "kernels/attention.h"

namespace pylm {

struct PagedAttnGroup {
    const float* q;           // [g, D] the query heads of this group (already RoPE'd)
    float* out;               // [g, D]
    const float* k_pool;      // layer's K pool: [n_blocks, block_size, kv_dim]
    const float* v_pool;      // layer's V pool, same layout
    const int32_t* table;     // [n_logical_blocks] physical block ids of the sequence
    int64_t kv_dim;           // Hkv * D (row stride inside a block)
    int64_t kv_offset;        // kv_head * D
    int64_t pos;              // the token's position: attends keys [0, pos] (causal)
    int64_t window;           // > 0: only keys pos - window < j <= pos
    int block_size;
    int g, D;
    float scale;              // applied to q.k
    float softcap;            // > 0: s = softcap * tanh(s / softcap)
};

constexpr int kPagedAttnMaxG = 16;
constexpr int kPagedAttnMaxD = 512;
constexpr int kAttnRowsPerTask = 16;  // rows per paged_attention_rows call (the engine's tasks)

// A row's keys are folded in chunks of the absolute key index (j / kAttnKeyChunk), each into its
// own online-softmax state, and the chunk states are merged at the end (flash-decoding): a
// decode step's few rows spread over threads by chunk, and every path (one chunk per task, or
// a task's rows page by page) gives a row the same chunk states, so the same bits. A row with
// one chunk (<= kAttnKeyChunk keys in one aligned chunk) is the plain fold.
constexpr int64_t kAttnKeyChunk = 256;

// Chunks of row a (its keys [first, pos], window included); the floats of one chunk state; a
// state laid over mem (64-byte aligned mem: 64-byte aligned accumulators).
int64_t paged_attention_chunks(const PagedAttnGroup& a);
int64_t paged_attention_state_floats(const PagedAttnGroup& a);
AttnState paged_attention_state(const PagedAttnGroup& a, float* mem);
// Chunk c (0 .. paged_attention_chunks(a) - 1) of row a folded into st (initialized here).
void paged_attention_fold_chunk(const PagedAttnGroup& a, int64_t c, AttnState& st);
// Row a's output from its n chunk states, in chunk order.
void paged_attention_merge(const PagedAttnGroup& a, const AttnState* chunks, int64_t n);

// Rows of one sequence and kv head, each one token's g query heads (a[i]: same table, kv head
// and geometry; n <= kAttnRowsPerTask): every chunk of every row, walked page by page over all
// the rows, so a page's K/V run is read from memory once for them (a verification's or a
// prefill's rows), then each row merged.
void paged_attention_rows(const PagedAttnGroup* a, int n);

}  // namespace pylm
