// Paged KV cache: a pool of fixed-size blocks shared by every sequence (vLLM's PagedAttention
// layout, on the CPU).
//
// Storage per layer: K and V pools of [n_blocks, block_size, kv_dim] floats, kv_dim = Hkv * D.
// A sequence owns a block table (logical block i -> physical block) used by every layer.
// Blocks are reference counted: fork() shares the parent's blocks, and the first write into a
// shared block copies it (copy-on-write). All allocations for a batch happen up front, so a
// pool that runs out raises KVPoolExhausted and leaves every sequence exactly as it was.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "engine/block_tables.h"

namespace pylm {

class PagedKVCache {
public:
    // n_blocks blocks of block_size tokens; per token and layer kv_dim floats for K and for V.
    PagedKVCache(int n_layer, int64_t kv_dim, int block_size, int64_t n_blocks);

    int block_size() const { return tables_.block_size(); }
    int64_t n_blocks() const { return tables_.n_blocks(); }
    int64_t free_blocks() const { return tables_.free_blocks(); }
    int64_t kv_dim() const { return kv_dim_; }

    int seq_new() { return tables_.seq_new(); }
    int seq_fork(int parent) { return tables_.seq_fork(parent); }  // copy-on-write sharing
    void seq_truncate(int seq, int64_t n_tokens) { tables_.seq_truncate(seq, n_tokens); }
    void seq_free(int seq) { tables_.seq_free(seq); }
    void clear() { tables_.clear(); }  // frees every sequence
    int64_t seq_len(int seq) const { return tables_.seq_len(seq); }
    bool seq_exists(int seq) const { return tables_.seq_exists(seq); }
    std::vector<int> seq_ids() const { return tables_.seq_ids(); }
    const std::vector<int32_t>& block_table(int seq) const { return tables_.block_table(seq); }

    // Makes room for `n_new` more tokens on each of `seqs` (which may repeat): allocates blocks
    // and un-shares the partially filled last block. Either succeeds for all or changes nothing.
    void reserve(const std::vector<int>& seqs, const std::vector<int64_t>& n_new) {
        tables_.reserve(seqs, n_new);
    }
    // Advances a sequence's length after its K/V rows were written (reserve() came first).
    void commit(int seq, int64_t n_new) { tables_.commit(seq, n_new); }

    // Row of token `pos` of `seq` in layer `il` (pos < reserved capacity).
    float* k_row(int il, int seq, int64_t pos) { return k_[il].get() + tables_.slot(seq, pos) * kv_dim_; }
    float* v_row(int il, int seq, int64_t pos) { return v_[il].get() + tables_.slot(seq, pos) * kv_dim_; }
    float* k_block(int il, int32_t block) { return k_[il].get() + block * block_stride(); }
    float* v_block(int il, int32_t block) { return v_[il].get() + block * block_stride(); }
    int64_t block_stride() const { return static_cast<int64_t>(tables_.block_size()) * kv_dim_; }

private:
    void copy_block(int32_t dst, int32_t src);

    int n_layer_;
    int64_t kv_dim_;
    // [n_layer][n_blocks * block_size * kv_dim], left uninitialized: pages are only touched
    // (and only count as memory) once a sequence writes into them.
    // 64-byte aligned pools: a head's K/V slice of a row (D floats at a multiple of D, D a
    // multiple of 16) then starts on a cache line, and the attention kernels' 64-byte loads do
    // not each straddle two lines (new float[] gives 16-byte alignment: the AVX-512 fold took
    // 1.6x the time).
    struct AlignedFree {
        void operator()(float* p) const { std::free(p); }
    };
    std::vector<std::unique_ptr<float[], AlignedFree>> k_, v_;
    BlockTables tables_;
};

}  // namespace pylm
