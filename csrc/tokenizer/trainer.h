// Byte-level BPE trainer: counts pre-tokenized words, then repeatedly merges the most frequent
// adjacent symbol pair (Sennrich et al. 2016; GPT-2's byte-level variant).
//
// Pair counts are kept incrementally: a merge only revisits the words that contain the pair
// (an index pair -> words) and applies count deltas, and a lazy max-heap finds the next best
// pair, so training is not quadratic in the number of merges. Ties on count go to the pair
// whose (left bytes, right bytes) sorts first.
//
// Worked example (tests/test_tokenizer_train.py): words low x5, lower x2, newest x6 give
// (l,o)=7 (o,w)=7 (w,e)=8 (e,r)=2 (n,e)=6 (e,w)=6 (e,s)=6 (s,t)=6: the first merge is (w,e).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/hash.h"
#include "tokenizer/pretokenize.h"

namespace pylm {
namespace tok {

class BpeTrainer {
public:
    explicit BpeTrainer(PreType pre) : pre_(pre) {}

    // Pre-tokenizes text and counts its words (before start()).
    void add_text(const char* text, size_t n);
    void add_word(const char* w, size_t n, int64_t count);
    // Builds the symbol sequences and pair counts; symbols 0..255 are the bytes.
    void start();
    // Performs up to max_merges merges whose pair count is >= min_count; returns how many.
    int step(int max_merges, int64_t min_count);

    size_t n_words() const { return word_count_.size(); }
    const std::vector<std::string>& symbols() const { return sym_bytes_; }  // [n_sym] raw bytes
    const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
    // Current count of every pair with a positive count: (left, right, count).
    std::vector<std::tuple<int32_t, int32_t, int64_t>> pair_counts() const;

private:
    struct HeapEntry {
        int64_t count;
        int32_t a, b;
    };
    bool heap_less(const HeapEntry& x, const HeapEntry& y) const;  // x ranks below y
    void push(int32_t a, int32_t b, int64_t count);
    static uint64_t key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }

    PreType pre_;
    PretokScratch scratch_;
    std::vector<Span> spans_;
    StrMap word_index_;  // word bytes -> index
    std::vector<std::string> word_bytes_;
    std::vector<int64_t> word_count_;
    std::vector<std::vector<int32_t>> word_syms_;
    std::vector<uint32_t> word_stamp_;  // last merge that visited the word
    std::vector<std::string> sym_bytes_;
    std::unordered_map<uint64_t, int64_t> pair_count_;
    std::unordered_map<uint64_t, std::vector<int32_t>> pair_words_;
    std::vector<HeapEntry> heap_;
    std::vector<std::pair<int32_t, int32_t>> merges_;
    bool started_ = false;
};

}  // namespace tok
}  // namespace pylm
