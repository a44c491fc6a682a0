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
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace pylm {

struct KVPoolExhausted : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class PagedKVCache {
public:
    // n_blocks blocks of block_size tokens; per token and layer kv_dim floats for K and for V.
    PagedKVCache(int n_layer, int64_t kv_dim, int block_size, int64_t n_blocks);

    int block_size() const { return block_size_; }
    int64_t n_blocks() const { return n_blocks_; }
    int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size()); }
    int64_t kv_dim() const { return kv_dim_; }

    int seq_new();
    int seq_fork(int parent);           // shares the parent's blocks (copy-on-write)
    void seq_truncate(int seq, int64_t n_tokens);  // keep the first n_tokens
    void seq_free(int seq);
    void clear();                       // frees every sequence
    int64_t seq_len(int seq) const;
    bool seq_exists(int seq) const { return seqs_.count(seq) != 0; }
    std::vector<int> seq_ids() const;
    const std::vector<int32_t>& block_table(int seq) const;

    // Makes room for `n_new` more tokens on each of `seqs` (which may repeat): allocates blocks
    // and un-shares the partially filled last block. Either succeeds for all or changes nothing.
    void reserve(const std::vector<int>& seqs, const std::vector<int64_t>& n_new);
    // Advances a sequence's length after its K/V rows were written (reserve() came first).
    void commit(int seq, int64_t n_new);

    // Row of token `pos` of `seq` in layer `il` (pos < reserved capacity).
    float* k_row(int il, int seq, int64_t pos);
    float* v_row(int il, int seq, int64_t pos);
    float* k_block(int il, int32_t block) { return k_[il].get() + block * block_stride(); }
    float* v_block(int il, int32_t block) { return v_[il].get() + block * block_stride(); }
    int64_t block_stride() const { return static_cast<int64_t>(block_size_) * kv_dim_; }

private:
    struct Seq {
        std::vector<int32_t> blocks;
        int64_t len = 0;
    };
    Seq& get(int seq);
    const Seq& get(int seq) const;
    int32_t alloc_block();
    void release_block(int32_t b);
    void copy_block(int32_t dst, int32_t src);

    int n_layer_;
    int64_t kv_dim_;
    int block_size_;
    int64_t n_blocks_;
    // [n_layer][n_blocks * block_size * kv_dim], left uninitialized: pages are only touched
    // (and only count as memory) once a sequence writes into them.
    std::vector<std::unique_ptr<float[]>> k_, v_;
    std::vector<int32_t> refcount_;
    std::vector<int32_t> free_list_;
    std::unordered_map<int, Seq> seqs_;
    int next_id_ = 0;
};

}  // namespace pylm
