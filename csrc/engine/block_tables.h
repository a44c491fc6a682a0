// Paged-KV bookkeeping (vLLM's PagedAttention block tables), shared by the CPU cache
// (kv_cache.h: storage in host memory) and the GPU engine (cuda/engine/: storage in device
// memory). Sequences own block tables (logical block i -> physical block); blocks are reference
// counted; fork() shares blocks and the first write into a shared, partially filled block copies
// it (the copy itself is the owner's callback: a memcpy of every layer's K/V block).
// reserve() allocates for a whole batch up front, so a pool that runs out throws KVPoolExhausted
// and leaves every sequence exactly as it was.
#pragma once
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace pylm {

// Raised to Python as pylm.KVPoolExhausted (by both engines' bindings).
struct KVPoolExhausted : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class BlockTables {
public:
    using CopyFn = std::function<void(int32_t dst, int32_t src)>;
    // `where` names the pool in error messages ("KV cache", "KV cache (cuda)").
    BlockTables(int block_size, int64_t n_blocks, CopyFn copy_block, std::string where = "KV cache");

    int block_size() const { return block_size_; }
    int64_t n_blocks() const { return n_blocks_; }
    int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size()); }

    int seq_new();
    int seq_fork(int parent);
    void seq_truncate(int seq, int64_t n_tokens);  // keep the first n_tokens
    void seq_free(int seq);
    void clear();
    int64_t seq_len(int seq) const;
    bool seq_exists(int seq) const { return seqs_.count(seq) != 0; }
    std::vector<int> seq_ids() const;
    const std::vector<int32_t>& block_table(int seq) const;

    // Room for n_new[i] more tokens on seqs[i] (ids may repeat); all or nothing.
    void reserve(const std::vector<int>& seqs, const std::vector<int64_t>& n_new);
    void commit(int seq, int64_t n_new);
    // Cache slot (physical block * block_size + offset) of token `pos` of `seq` (reserved).
    int64_t slot(int seq, int64_t pos) const;

private:
    struct Seq {
        std::vector<int32_t> blocks;
        int64_t len = 0;
    };
    Seq& get(int seq);
    const Seq& get(int seq) const;
    int32_t alloc_block();
    void release_block(int32_t b);

    int block_size_;
    int64_t n_blocks_;
    CopyFn copy_block_;
    std::string where_;
    std::vector<int32_t> refcount_;
    std::vector<int32_t> free_list_;
    std::unordered_map<int, Seq> seqs_;
    int next_id_ = 0;
};

}  // namespace pylm
