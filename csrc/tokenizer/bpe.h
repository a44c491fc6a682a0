// Byte-level BPE (tokenizer.ggml.model == "gpt2"): merges ranked by their line in
// tokenizer.ggml.merges, applied inside each pre-tokenized word, lowest rank first and
// leftmost first among equal ranks (llm_tokenizer_bpe_session in llama.cpp).
//
// Symbols are ids: a vocabulary id when the symbol's text is a token, otherwise an "extra" id
// >= n_vocab for strings that occur in merges without being tokens. A merge is the pair map
// (left, right) -> (rank, merged). Words of up to kSmallWord bytes use an O(n^2) scan over a
// rank array (fast for short words); longer words use a linked list and a binary heap,
// O(n log n).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/hash.h"
#include "tokenizer/vocab.h"

namespace pylm {
namespace tok {

struct BpeScratch {
    std::vector<int32_t> sym;     // [n] symbol per position
    std::vector<int32_t> rank;    // [n] rank of (sym[i], sym[i+1]), or INT32_MAX
    std::vector<int32_t> merged;  // [n] merged symbol of (sym[i], sym[i+1])
    std::vector<int32_t> prev, next;
    struct Entry {
        int32_t rank, left, right, sym_left, sym_right;
    };
    std::vector<Entry> heap;
};

class BpeModel {
public:
    static constexpr size_t kSmallWord = 32;

    // merges: "left right" lines in GPT-2 byte-level text. ignore_merges: a word that is a
    // whole token is emitted as is (llama-bpe).
    BpeModel(const Vocab& vocab, const StringTable& merges, bool ignore_merges);

    // Appends the token ids of one word given as raw bytes w[0, n), n >= 1.
    void encode_word(const uint8_t* w, size_t n, std::vector<int32_t>& out, BpeScratch& sc) const;
    // Same, forcing the heap algorithm (tests compare both paths).
    void encode_word_heap(const uint8_t* w, size_t n, std::vector<int32_t>& out,
                          BpeScratch& sc) const;

    size_t n_merges() const { return merges_.size(); }

private:
    int32_t symbol_id(const std::string& text);  // vocabulary id or a new/old extra id
    void emit(int32_t sym, std::vector<int32_t>& out) const;
    void merge_small(BpeScratch& sc, size_t n) const;
    size_t merge_heap(BpeScratch& sc, size_t n) const;  // leaves the result in sc.sym[0, return)

    const Vocab& vocab_;
    bool ignore_merges_;
    int32_t n_vocab_;
    int32_t byte_sym_[256];
    PairMap merges_;
    StrMap extra_ids_;                     // text of extra symbols -> id
    std::vector<std::string> extra_text_;  // [id - n_vocab]
    StrMap raw_to_id_;                     // raw bytes of byte-level tokens -> id
};

}  // namespace tok
}  // namespace pylm
