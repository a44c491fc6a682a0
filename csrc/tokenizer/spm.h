// SentencePiece-style BPE (tokenizer.ggml.model == "llama", e.g. Gemma 3): the text, with ' '
// already escaped to U+2581, starts as one symbol per UTF-8 character; the adjacent pair whose
// concatenation is the highest-scoring token merges first (leftmost among equal scores),
// until no pair is a token. Symbols that are not tokens fall back to <0xXX> byte tokens.
// Mirrors llm_tokenizer_spm_session in llama.cpp; a binary heap keeps it O(n log n).
//
// Speed-up, exact: no merge can ever join two characters c and d unless some token contains
// "cd". At a "▁" whose preceding character c appears before "▁" in no token (in Gemma 3 only
// ">▁</" has an inner "▁"), the text falls into independent halves whose merges do not
// interact, so split_points() cuts the text into words there and each word can be encoded
// (and cached) on its own.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/hash.h"
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
    // Appends to cuts the byte offsets in (0, n) where text[0, n) splits into independent words
    // (see above). text must be valid UTF-8.
    void split_points(const char* text, size_t n, std::vector<uint32_t>& cuts) const;

private:
    const Vocab& vocab_;
    int32_t byte_tok_[256];
    StrMap before_space_;  // characters that precede "▁" inside some token
};

// ' ' -> U+2581 ("▁"), appended to out.
void escape_spaces(const char* text, size_t n, std::string& out);

}  // namespace tok
}  // namespace pylm
