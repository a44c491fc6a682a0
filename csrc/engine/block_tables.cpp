// Block-table bookkeeping of the paged KV caches (see block_tables.h).
#include "engine/block_tables.h"

#include <algorithm>
#include <map>

namespace pylm {

BlockTables::BlockTables(int block_size, int64_t n_blocks, CopyFn copy_block, std::string where)
    : block_size_(block_size), n_blocks_(n_blocks), copy_block_(std::move(copy_block)),
      where_(std::move(where)) {
    if (block_size <= 0 || n_blocks <= 0 || n_blocks > INT32_MAX)
        throw std::invalid_argument(where_ + ": bad geometry (block_size=" + std::to_string(block_size) +
                                    ", blocks=" + std::to_string(n_blocks) + ")");
    refcount_.assign(n_blocks, 0);
    free_list_.reserve(n_blocks);
    for (int64_t b = n_blocks - 1; b >= 0; --b) free_list_.push_back(static_cast<int32_t>(b));
}

BlockTables::Seq& BlockTables::get(int seq) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) throw std::out_of_range("unknown sequence id " + std::to_string(seq));
    return it->second;
}
const BlockTables::Seq& BlockTables::get(int seq) const {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) throw std::out_of_range("unknown sequence id " + std::to_string(seq));
    return it->second;
}

int BlockTables::seq_new() {
    const int id = next_id_++;
    seqs_[id] = Seq{};
    return id;
}

int BlockTables::seq_fork(int parent) {
    Seq child = get(parent);
    for (int32_t b : child.blocks) ++refcount_[b];
    const int id = next_id_++;
    seqs_[id] = std::move(child);
    return id;
}

void BlockTables::seq_truncate(int seq, int64_t n) {
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

void BlockTables::seq_free(int seq) {
    Seq& s = get(seq);
    for (int32_t b : s.blocks) release_block(b);
    seqs_.erase(seq);
}

void BlockTables::clear() {
    for (auto& kv : seqs_)
        for (int32_t b : kv.second.blocks) release_block(b);
    seqs_.clear();
}

int64_t BlockTables::seq_len(int seq) const { return get(seq).len; }

std::vector<int> BlockTables::seq_ids() const {
    std::vector<int> out;
    for (auto& kv : seqs_) out.push_back(kv.first);
    std::sort(out.begin(), out.end());
    return out;
}

const std::vector<int32_t>& BlockTables::block_table(int seq) const { return get(seq).blocks; }

int32_t BlockTables::alloc_block() {
    const int32_t b = free_list_.back();
    free_list_.pop_back();
    refcount_[b] = 1;
    return b;
}

void BlockTables::release_block(int32_t b) {
    if (--refcount_[b] == 0) free_list_.push_back(b);
}

void BlockTables::reserve(const std::vector<int>& seqs, const std::vector<int64_t>& n_new) {
    std::map<int, int64_t> add;  // total new tokens per sequence
    for (size_t i = 0; i < seqs.size(); ++i) {
        get(seqs[i]);
        add[seqs[i]] += n_new[i];
    }
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
        throw KVPoolExhausted(
            where_ + " pool exhausted: the batch needs " + std::to_string(need) +
            " more blocks of " + std::to_string(block_size_) + " tokens but only " +
            std::to_string(free_blocks()) + " of " + std::to_string(n_blocks_) + " are free");
    for (auto& [id, n] : add) {
        if (n <= 0) continue;
        Seq& s = get(id);
        if (s.len % block_size_ != 0) {
            int32_t& last = s.blocks[s.len / block_size_];
            if (refcount_[last] > 1) {  // copy-on-write of the shared, partially filled block
                const int32_t fresh = alloc_block();
                copy_block_(fresh, last);
                release_block(last);
                last = fresh;
            }
        }
        const int64_t want = (s.len + n + block_size_ - 1) / block_size_;
        while (static_cast<int64_t>(s.blocks.size()) < want) s.blocks.push_back(alloc_block());
    }
}

void BlockTables::commit(int seq, int64_t n_new) { get(seq).len += n_new; }

int64_t BlockTables::slot(int seq, int64_t pos) const {
    const Seq& s = get(seq);
    return static_cast<int64_t>(s.blocks[pos / block_size_]) * block_size_ + pos % block_size_;
}

}  // namespace pylm
