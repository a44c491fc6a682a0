// Pre-tokenizers of the byte-level BPE models: split text into the pieces ("words") that BPE
// merges run inside. Each is a hand-written matcher of one regex, with the semantics llama.cpp
// gives it (llama.cpp/src/unicode.cpp, unicode_regex_split_custom_*):
//
//   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm  \p{N} (every digit alone), then gpt2 on the text between digits
//   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//           | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2   llama3 with \p{N} instead of \p{N}{1,3}
//
// Codepoint classes come from unicode.h. "Punctuation" in these regexes ([^\s\p{L}\p{N}]) is
// every other codepoint, unassigned ones included; only ASCII ' ' may prefix a word.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pylm {
namespace tok {

enum class PreType : int { Gpt2 = 0, Smollm = 1, Llama3 = 2, Qwen2 = 3 };

// Maps a GGUF `tokenizer.ggml.pre` value to a PreType (also the other names llama.cpp gives
// the same regexes, e.g. "starcoder" = smollm); false for names not implemented.
bool parse_pre_type(const std::string& name, PreType& out);
// Names accepted by parse_pre_type, comma separated (for error messages).
std::string pre_type_names();

struct Span {
    uint32_t begin, end;  // byte offsets [begin, end) into the text
};

// Reusable buffers (one per thread).
struct PretokScratch {
    std::vector<uint32_t> cpts;   // [n_cpt]
    std::vector<uint16_t> flags;  // [n_cpt]
    std::vector<uint32_t> offs;   // [n_cpt + 1] byte offset of each codepoint
};

// Splits text[0, n) into spans covering it exactly, in order. The text must decode without
// U+FFFD substitutions (see sanitize_utf8): spans are byte ranges of the text as given.
void pretokenize(PreType type, const char* text, size_t n, PretokScratch& scratch,
                 std::vector<Span>& out);

// True when text decodes (leniently, see unicode.h) without substitutions and with all
// codepoints <= U+10FFFF.
bool is_clean_utf8(const char* text, size_t n);
// Re-encodes text with every malformed byte replaced by U+FFFD, as llama.cpp does before
// pre-tokenizing. Throws std::invalid_argument for codepoints beyond U+10FFFF.
std::string sanitize_utf8(const char* text, size_t n);

}  // namespace tok
}  // namespace pylm
