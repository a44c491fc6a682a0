// The vocabulary of a GGUF tokenizer: token texts, types, scores, the text -> id map, special
// ids and the decoded bytes of every token ("pieces").
//
// Token types are GGUF's tokenizer.ggml.token_type values; like llama.cpp they become attribute
// bits, and a few "control-looking" texts (<|im_end|>, </s>, fim tokens, ...) gain kAttrControl
// because many conversions mark them normal or user-defined (llama_vocab::impl::load).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/hash.h"

namespace pylm {
namespace tok {

// A list of byte strings stored back to back: string i is data[off[i], off[i + 1]).
struct StringTable {
    std::string data;
    std::vector<uint64_t> off{0};

    size_t size() const { return off.size() - 1; }
    std::string_view get(size_t i) const {
        return std::string_view(data.data() + off[i], off[i + 1] - off[i]);
    }
    void push(std::string_view s) {
        data.append(s.data(), s.size());
        off.push_back(data.size());
    }
};

// GGUF token types.
enum TokenType : int32_t {
    kTypeUndefined = 0,
    kTypeNormal = 1,
    kTypeUnknown = 2,
    kTypeControl = 3,
    kTypeUserDefined = 4,
    kTypeUnused = 5,
    kTypeByte = 6,
};

// Attribute bits (llama_token_attr).
enum TokenAttr : uint32_t {
    kAttrUnknown = 1 << 0,
    kAttrUnused = 1 << 1,
    kAttrNormal = 1 << 2,
    kAttrControl = 1 << 3,
    kAttrUserDefined = 1 << 4,
    kAttrByte = 1 << 5,
};

enum class ModelKind { Bpe, Spm };  // tokenizer.ggml.model "gpt2" / "llama"

// Special ids from the GGUF metadata; -1 where the key is absent.
struct SpecialIds {
    int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1;
    int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
};

class Vocab {
public:
    // tokens [V], types [V] or empty (all normal), scores [V] or empty (all 0).
    // Throws std::invalid_argument on duplicate tokens or mismatched lengths.
    Vocab(ModelKind kind, const StringTable& tokens, const std::vector<int32_t>& types,
          const std::vector<float>& scores, SpecialIds ids);

    int32_t size() const { return static_cast<int32_t>(attr_.size()); }
    ModelKind kind() const { return kind_; }
    std::string_view text(int32_t id) const { return texts_.get(id); }
    std::string_view piece(int32_t id) const { return pieces_.get(id); }
    uint32_t attr(int32_t id) const { return attr_[id]; }
    float score(int32_t id) const { return scores_.empty() ? 0.0f : scores_[id]; }
    int32_t find(const char* s, size_t n) const { return text_to_id_.find(s, n); }
    int32_t find(std::string_view s) const { return text_to_id_.find(s.data(), s.size()); }
    const SpecialIds& ids() const { return ids_; }
    const std::vector<int32_t>& eog_ids() const { return eog_; }
    // Attributes that make a token special in text (the special-token partition).
    bool is_special(int32_t id) const {
        return attr_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown);
    }
    // Dropped by decode(skip_special=true), like llama.cpp's token_to_piece(special=false).
    bool is_hidden(int32_t id) const { return attr_[id] & (kAttrControl | kAttrUnknown); }

private:
    void apply_text_overrides();
    void build_pieces();

    ModelKind kind_;
    StringTable texts_;
    StringTable pieces_;
    std::vector<uint32_t> attr_;
    std::vector<float> scores_;
    StrMap text_to_id_;
    SpecialIds ids_;
    std::vector<int32_t> eog_;
};

}  // namespace tok
}  // namespace pylm
