// Special-token partition: cuts text at occurrences of special tokens (control, user-defined
// and unknown types) before the model's own tokenizer runs on the pieces in between.
//
// llama.cpp (tokenizer_st_partition) takes the special tokens longest first and, for each,
// splits every remaining text fragment at all its leftmost non-overlapping occurrences. With
// parse_special=false only user-defined tokens are cut out; control and unknown tokens stay
// plain text. This class computes the same result, but first finds with a trie which special
// tokens occur in the text at all, so the longest-first passes run only over those.
// NOTE: tokens of equal length are taken in id order; llama.cpp's std::sort leaves that order
// unspecified, which matters only if two equal-length special tokens overlap in the text.
#pragma once
#include <cstdint>
#include <vector>

#include "tokenizer/hash.h"
#include "tokenizer/vocab.h"

namespace pylm {
namespace tok {

struct Fragment {
    int32_t token;  // >= 0: a special token; -1: text[begin, end)
    uint32_t begin, end;
};

class SpecialSplitter {
public:
    explicit SpecialSplitter(const Vocab& vocab);

    // Replaces out with the fragments of text[0, n), in order.
    void split(const char* text, size_t n, bool parse_special, std::vector<Fragment>& out,
               std::vector<Fragment>& tmp) const;

private:
    const Vocab& vocab_;
    std::vector<int32_t> order_;  // special ids, longest text first (then by id)
    // Trie over the special texts: node -> (byte -> child). Node 0 is the root.
    PairMap edges_;              // (node, byte) -> (child, 0)
    std::vector<int32_t> term_;  // [node] index into order_ of the text ending here, or -1
    bool root_byte_[256] = {};
};

}  // namespace tok
}  // namespace pylm
