// Attention of one token's query heads over a sequence's paged K/V (decode and prefill alike).
//
// One call handles one (token, kv head) pair and the g = Hq / Hkv query heads that share it, so
// each K/V row is read once for the whole group. The page walk is here; the math is the fused
// attention kernel's online-softmax fold (kernels/attention.h), one contiguous run per page.
#pragma once
#include <cstdint>

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

void paged_attention_group(const PagedAttnGroup& a);

}  // namespace pylm
