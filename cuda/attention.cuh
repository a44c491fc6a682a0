// Attention on the GPU — launcher contracts (owner: cuda/attention*.cu, cuda/paged_attention*.cu).
//
// Shapes use B batch, T time, H heads (Hq query heads, Hkv key/value heads, Hq % Hkv == 0:
// grouped-query attention, query head h reads kv head h / (Hq / Hkv)), D head dim.
// Masking for query position p and key position j: causal keeps j <= p; a sliding window W > 0
// additionally keeps only p - j < W; softcap > 0 applies s = softcap * tanh(s / softcap) to the
// scaled scores before the mask. Softmax is online, in fp32; no T x T matrix is materialized.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {

// Flash attention forward (prefill / training).
struct FlashAttnParams {
    DType dtype = DType::F16;   // q, k, v, o share it: F32, F16 or BF16
    const void* q = nullptr;    // [B, Tq, Hq, D]
    const void* k = nullptr;    // [B, Tk, Hkv, D]
    const void* v = nullptr;    // [B, Tk, Hkv, D]
    void* o = nullptr;          // [B, Tq, Hq, D]
    float* lse = nullptr;       // optional [B, Hq, Tq] log-sum-exp of the scaled scores (backward)
    int B = 0, Tq = 0, Tk = 0, Hq = 0, Hkv = 0, D = 0;  // D in {64, 128, 256}
    // Element strides of the batch and time dims (heads are D apart, D is contiguous).
    int64_t q_stride_b = 0, q_stride_t = 0, k_stride_b = 0, k_stride_t = 0;
    int64_t v_stride_b = 0, v_stride_t = 0, o_stride_b = 0, o_stride_t = 0;
    float scale = 0.f;          // usually 1/sqrt(D)
    bool causal = true;
    int q_offset = 0;           // position of query 0 relative to key 0 (Tk - Tq after a cache)
    int window = 0;             // 0 = no sliding window
    float softcap = 0.f;        // 0 = none
};
void flash_attn_fwd(const FlashAttnParams& p, cudaStream_t stream);

// Decode attention over the paged KV cache (the engine's block tables), a few query tokens per
// sequence (1 for decode, gamma+1 for speculative verification), several sequences per launch,
// split-K over long contexts.
struct PagedAttnParams {
    DType q_dtype = DType::F32;    // q and o: F32, F16 or BF16
    DType kv_dtype = DType::F16;   // cache: F32, F16 or BF16
    const void* q = nullptr;       // [S, Tq, Hq, D]; query i of sequence s sits at position
                                   // context_lens[s] - Tq + i (its own K/V are already cached)
    void* o = nullptr;             // [S, Tq, Hq, D]
    const void* k_cache = nullptr; // [num_blocks, block_size, Hkv, D] (one layer)
    const void* v_cache = nullptr; // [num_blocks, block_size, Hkv, D]
    const int32_t* block_tables = nullptr;  // [S, max_blocks_per_seq]
    const int32_t* context_lens = nullptr;  // [S] tokens in the cache per sequence, incl. the Tq new
    int S = 0, Tq = 1, Hq = 0, Hkv = 0, D = 0, block_size = 16, max_blocks_per_seq = 0;
    int max_context_len = 0;       // upper bound of context_lens (sizes the split-K grid)
    float scale = 0.f;
    int window = 0;
    float softcap = 0.f;
    // Split-K scratch: the launcher needs paged_attn_workspace_bytes(p) bytes here (may be null
    // when that is 0).
    void* workspace = nullptr;
};
size_t paged_attn_workspace_bytes(const PagedAttnParams& p);
void paged_attn_decode(const PagedAttnParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace pylm
