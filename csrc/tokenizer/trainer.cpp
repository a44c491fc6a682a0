// Byte-level BPE trainer: see trainer.h.
#include "tokenizer/trainer.h"

#include <algorithm>
#include <stdexcept>
#include <tuple>

namespace pylm {
namespace tok {

void BpeTrainer::add_word(const char* w, size_t n, int64_t count) {
    if (started_) throw std::logic_error("BpeTrainer: add_word after start()");
    if (n == 0 || count <= 0) return;
    const int32_t next = static_cast<int32_t>(word_count_.size());
    const int32_t k = word_index_.insert(w, n, next);
    if (k == next) {
        word_bytes_.emplace_back(w, n);
        word_count_.push_back(0);
    }
    word_count_[k] += count;
}

void BpeTrainer::add_text(const char* text, size_t n) {
    std::string clean;
    if (!is_clean_utf8(text, n)) {
        clean = sanitize_utf8(text, n);
        text = clean.data();
        n = clean.size();
    }
    pretokenize(pre_, text, n, scratch_, spans_);
    for (const Span& s : spans_) add_word(text + s.begin, s.end - s.begin, 1);
}

bool BpeTrainer::heap_less(const HeapEntry& x, const HeapEntry& y) const {
    if (x.count != y.count) return x.count < y.count;
    // Equal counts: the lexicographically smaller pair is "greater" (popped first).
    const int c = sym_bytes_[x.a].compare(sym_bytes_[y.a]);
    if (c != 0) return c > 0;
    return sym_bytes_[x.b].compare(sym_bytes_[y.b]) > 0;
}

void BpeTrainer::push(int32_t a, int32_t b, int64_t count) {
    heap_.push_back(HeapEntry{count, a, b});
    std::push_heap(heap_.begin(), heap_.end(),
                   [this](const HeapEntry& x, const HeapEntry& y) { return heap_less(x, y); });
}

void BpeTrainer::start() {
    if (started_) return;
    started_ = true;
    sym_bytes_.clear();
    for (int b = 0; b < 256; ++b) sym_bytes_.emplace_back(1, static_cast<char>(b));
    word_syms_.resize(word_bytes_.size());
    word_stamp_.assign(word_bytes_.size(), 0);
    for (size_t w = 0; w < word_bytes_.size(); ++w) {
        const std::string& s = word_bytes_[w];
        auto& syms = word_syms_[w];
        syms.resize(s.size());
        for (size_t i = 0; i < s.size(); ++i) syms[i] = static_cast<uint8_t>(s[i]);
        for (size_t i = 0; i + 1 < syms.size(); ++i) {
            const uint64_t k = key(syms[i], syms[i + 1]);
            pair_count_[k] += word_count_[w];
            auto& lst = pair_words_[k];
            if (lst.empty() || lst.back() != static_cast<int32_t>(w))
                lst.push_back(static_cast<int32_t>(w));
        }
    }
    for (const auto& kv : pair_count_)
        push(static_cast<int32_t>(kv.first >> 32), static_cast<int32_t>(kv.first & 0xFFFFFFFFu),
             kv.second);
}

int BpeTrainer::step(int max_merges, int64_t min_count) {
    if (!started_) start();
    auto less = [this](const HeapEntry& x, const HeapEntry& y) { return heap_less(x, y); };
    int done = 0;
    std::unordered_map<uint64_t, int64_t> delta;
    std::vector<int32_t> merged_syms;
    while (done < max_merges && !heap_.empty()) {
        std::pop_heap(heap_.begin(), heap_.end(), less);
        const HeapEntry top = heap_.back();
        heap_.pop_back();
        const uint64_t k = key(top.a, top.b);
        auto it = pair_count_.find(k);
        const int64_t cur = it == pair_count_.end() ? 0 : it->second;
        if (cur != top.count) {  // stale: counts dropped since this entry was pushed
            if (cur > 0) push(top.a, top.b, cur);
            continue;
        }
        if (cur < min_count || cur <= 0) {
            heap_.push_back(top);  // keep it: a later call may use a lower min_count
            std::push_heap(heap_.begin(), heap_.end(), less);
            break;
        }
        const int32_t c = static_cast<int32_t>(sym_bytes_.size());
        sym_bytes_.push_back(sym_bytes_[top.a] + sym_bytes_[top.b]);
        merges_.emplace_back(top.a, top.b);
        const uint32_t stamp = static_cast<uint32_t>(merges_.size());
        delta.clear();
        std::vector<int32_t> words;
        words.swap(pair_words_[k]);
        for (int32_t w : words) {
            if (word_stamp_[w] == stamp) continue;
            word_stamp_[w] = stamp;
            auto& syms = word_syms_[w];
            const int64_t cnt = word_count_[w];
            merged_syms.clear();
            bool changed = false;
            for (size_t i = 0; i < syms.size();) {
                if (i + 1 < syms.size() && syms[i] == top.a && syms[i + 1] == top.b) {
                    merged_syms.push_back(c);
                    i += 2;
                    changed = true;
                } else {
                    merged_syms.push_back(syms[i]);
                    i += 1;
                }
            }
            if (!changed) continue;
            for (size_t i = 0; i + 1 < syms.size(); ++i) delta[key(syms[i], syms[i + 1])] -= cnt;
            for (size_t i = 0; i + 1 < merged_syms.size(); ++i) {
                const uint64_t nk = key(merged_syms[i], merged_syms[i + 1]);
                delta[nk] += cnt;
                if (merged_syms[i] == c || merged_syms[i + 1] == c) {
                    auto& lst = pair_words_[nk];
                    if (lst.empty() || lst.back() != w) lst.push_back(w);
                }
            }
            syms.swap(merged_syms);
        }
        for (const auto& d : delta) {
            if (d.second == 0) continue;
            int64_t& pc = pair_count_[d.first];
            pc += d.second;
            if (d.second > 0)
                push(static_cast<int32_t>(d.first >> 32),
                     static_cast<int32_t>(d.first & 0xFFFFFFFFu), pc);
            if (pc <= 0) pair_count_.erase(d.first);
        }
        pair_words_.erase(k);
        ++done;
    }
    return done;
}

std::vector<std::tuple<int32_t, int32_t, int64_t>> BpeTrainer::pair_counts() const {
    std::vector<std::tuple<int32_t, int32_t, int64_t>> out;
    for (const auto& kv : pair_count_)
        if (kv.second > 0)
            out.emplace_back(static_cast<int32_t>(kv.first >> 32),
                             static_cast<int32_t>(kv.first & 0xFFFFFFFFu), kv.second);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace tok
}  // namespace pylm
