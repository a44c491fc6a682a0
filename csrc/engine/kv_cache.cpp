#include "engine/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace pylm {

PagedKVCache::PagedKVCache(int n_layer, int64_t kv_dim, int block_size, int64_t n_blocks)
    : n_layer_(n_layer), kv_dim_(kv_dim), block_size_(block_size), n_blocks_(n_blocks) {
    if (n_layer <= 0 || kv_dim <= 0 || block_size <= 0 || n_blocks <= 0)
        throw std::invalid_argument("PagedKVCache: bad geometry (layers=" + std::to_string(n_layer) +
                                    ", kv_dim=" + std::to_string(kv_dim) + ", block_size=" +
                                    std::to_string(block_size) + ", blocks=" + std::to_string(n_blocks) + ")");
    const size_t n = static_cast<size_t>(n_blocks * block_stride());
    for (int il = 0; il < n_layer; ++il) {
        k_.emplace_back(new float[n]);
        v_.emplace_back(new float[n]);
    }
    refcount_.assign(n_blocks, 0);
    free_list_.reserve(n_blocks);
    for (int64_t b = n_blocks - 1; b >= 0; --b) free_list_.push_back(static_cast<int32_t>(b));
}

PagedKVCache::Seq& PagedKVCache::get(int seq) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) throw std::out_of_range("unknown sequence id " + std::to_string(seq));
    return it->second;
}
const PagedKVCache::Seq& PagedKVCache::get(int seq) const {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) throw std::out_of_range("unknown sequence id " + std::to_string(seq));
    return it->second;
}

int PagedKVCache::seq_new() {
    const int id = next_id_++;
    seqs_[id] = Seq{};
    return id;
}

int PagedKVCache::seq_fork(int parent) {
    Seq child = get(parent);
    for (int32_t b : child.blocks) ++refcount_[b];
    const int id = next_id_++;
    seqs_[id] = std::move(child);
    return id;
}

void PagedKVCache::seq_truncate(int seq, int64_t n) {
    Seq& s = get(seq);
    if (n < 0) throw std::invalid_argument("truncate: negative length " + std::to_string(n));
    if (n >= s.len) return;
    s.len = n;
    const size_t keep = static_cast<size_t>((n + block_size_ - 1) / block_size_);
    while (s.blocks.size() > keep) {
        release_block(s.blocks.back());
        s.blocks.pop_back();
    }
}

void PagedKVCache::seq_free(int seq) {
    Seq& s = get(seq);
    for (int32_t b : s.blocks) release_block(b);
    seqs_.erase(seq);
}

void PagedKVCache::clear() {
    for (auto& kv : seqs_)
        for (int32_t b : kv.second.blocks) release_block(b);
    seqs_.clear();
}

int64_t PagedKVCache::seq_len(int seq) const { return get(seq).len; }

std::vector<int> PagedKVCache::seq_ids() const {
    std::vector<int> out;
    for (auto& kv : seqs_) out.push_back(kv.first);
    std::sort(out.begin(), out.end());
    return out;
}

const std::vector<int32_t>& PagedKVCache::block_table(int seq) const { return get(seq).blocks; }

int32_t PagedKVCache::alloc_block() {
    const int32_t b = free_list_.back();
    free_list_.pop_back();
    refcount_[b] = 1;
    return b;
}

void PagedKVCache::release_block(int32_t b) {
    if (--refcount_[b] == 0) free_list_.push_back(b);
}

void PagedKVCache::copy_block(int32_t dst, int32_t src) {
    const size_t bytes = static_cast<size_t>(block_stride()) * sizeof(float);
    for (int il = 0; il < n_layer_; ++il) {
        std::memcpy(k_block(il, dst), k_block(il, src), bytes);
        std::memcpy(v_block(il, dst), v_block(il, src), bytes);
    }
}

void PagedKVCache::reserve(const std::vector<int>& seqs, const std::vector<int64_t>& n_new) {
    // Total new tokens per sequence (a sequence may appear several times in a batch).
    std::map<int, int64_t> add;
    for (size_t i = 0; i < seqs.size(); ++i) {
        get(seqs[i]);
        add[seqs[i]] += n_new[i];
    }
    // Count blocks needed: new blocks past the table's end, plus a private copy of a shared,
    // partially filled last block that will be written into.
    int64_t need = 0;
    for (auto& [id, n] : add) {
        const Seq& s = get(id);
        if (n <= 0) continue;
        const int64_t have = static_cast<int64_t>(s.blocks.size());
        const int64_t want = (s.len + n + block_size_ - 1) / block_size_;
        need += std::max<int64_t>(0, want - have);
        if (s.len % block_size_ != 0 && refcount_[s.blocks[s.len / block_size_]] > 1) ++need;
    }
    if (need > free_blocks())
        throw KVPoolExhausted("KV cache pool exhausted: the batch needs " + std::to_string(need) +
                              " more blocks of " + std::to_string(block_size_) + " tokens but only " +
                              std::to_string(free_blocks()) + " of " + std::to_string(n_blocks_) +
                              " are free");
    for (auto& [id, n] : add) {
        if (n <= 0) continue;
        Seq& s = get(id);
        if (s.len % block_size_ != 0) {
            int32_t& last = s.blocks[s.len / block_size_];
            if (refcount_[last] > 1) {
                const int32_t fresh = alloc_block();
                copy_block(fresh, last);
                release_block(last);
                last = fresh;
            }
        }
        const int64_t want = (s.len + n + block_size_ - 1) / block_size_;
        while (static_cast<int64_t>(s.blocks.size()) < want) s.blocks.push_back(alloc_block());
    }
}

void PagedKVCache::commit(int seq, int64_t n_new) { get(seq).len += n_new; }

float* PagedKVCache::k_row(int il, int seq, int64_t pos) {
    const Seq& s = get(seq);
    return k_block(il, s.blocks[pos / block_size_]) + (pos % block_size_) * kv_dim_;
}
float* PagedKVCache::v_row(int il, int seq, int64_t pos) {
    const Seq& s = get(seq);
    return v_block(il, s.blocks[pos / block_size_]) + (pos % block_size_) * kv_dim_;
}

}  // namespace pylm
