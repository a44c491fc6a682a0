// SentencePiece-style BPE (tokenizer.ggml.model == "llama", e.g. Gemma 3): the text, with ' '
// already escaped to U+2581, starts as one symbol per UTF-8 character; the adjacent pair whose
// concatenation is the highest-scoring token merges first (leftmost among equal scores),
// until no pair is a token. Symbols that are not tokens fall back to <0xXX> byte tokens.
// Mirrors llm_tokenizer_spm_session in llama.cpp; a binary heap keeps it O(n log n).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/vocab.h"

namespace pylm {
namespace tok {

struct SpmScratch {
    struct Sym {
        uint32_t begin, len;  // bytes of the escaped text
        int32_t prev, next;
        int32_t id;  // token id once merged, -1 for an unmerged character
    };
    struct Bigram {
        float score;
        int32_t left, right;
        uint32_t len;
        int32_t id;
    };
    std::vector<Sym> sym;
    std::vector<Bigram> heap;
};

class SpmModel {
public:
    explicit SpmModel(const Vocab& vocab);
    // Appends the ids of text[0, n) (spaces already escaped). Throws std::runtime_error if a
    // byte has no byte token.
    void encode(const char* text, size_t n, std::vector<int32_t>& out, SpmScratch& sc) const;

private:
    const Vocab& vocab_;
    int32_t byte_tok_[256];
};

// ' ' -> U+2581 ("▁"), appended to out.
void escape_spaces(const char* text, size_t n, std::string& out);

}  // namespace tok
}  // namespace pylm
