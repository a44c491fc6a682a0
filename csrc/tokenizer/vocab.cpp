// Vocabulary construction: see vocab.h.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "tokenizer/unicode.h"

namespace pylm {
namespace tok {

namespace {

uint32_t attr_of_type(int32_t type) {
    switch (type) {
        case kTypeUnknown:
            return kAttrUnknown;
        case kTypeUnused:
            return kAttrUnused;
        case kTypeNormal:
            return kAttrNormal;
        case kTypeControl:
            return kAttrControl;
        case kTypeUserDefined:
            return kAttrUserDefined;
        case kTypeByte:
            return kAttrByte;
        default:
            return 0;  // undefined: decodes to nothing
    }
}

// Texts llama.cpp treats as end-of-generation and forces to control type.
const char* const kEogTexts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81"
    "of\xE2\x96\x81"
    "sentence\xEF\xBD\x9C>",
    "[e~[",
};

// End-of-turn texts, in the order they are tried when the GGUF names no eot id.
const char* const kEotTexts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81"
    "of\xE2\x96\x81"
    "sentence\xEF\xBD\x9C>",
    "<end_of_utterance>",
};

// Fill-in-the-middle texts, per role: forced to control when the GGUF names no id for the role.
const char* const kFimPre[] = {"<|fim_prefix|>",
                               "<fim-prefix>",
                               "<fim_prefix>",
                               "<\xEF\xBD\x9C"
                               "fim\xE2\x96\x81"
                               "begin\xEF\xBD\x9C>",
                               "<PRE>",
                               "\xE2\x96\x81<PRE>",
                               "<|code_prefix|>",
                               "<|prefix|>"};
const char* const kFimSuf[] = {"<|fim_suffix|>",
                               "<fim-suffix>",
                               "<fim_suffix>",
                               "<\xEF\xBD\x9C"
                               "fim\xE2\x96\x81"
                               "hole\xEF\xBD\x9C>",
                               "<SUF>",
                               "\xE2\x96\x81<SUF>",
                               "<|code_suffix|>",
                               "<|suffix|>"};
const char* const kFimMid[] = {"<|fim_middle|>",
                               "<fim-middle>",
                               "<fim_middle>",
                               "<\xEF\xBD\x9C"
                               "fim\xE2\x96\x81"
                               "end\xEF\xBD\x9C>",
                               "<MID>",
                               "\xE2\x96\x81<MID>",
                               "<|code_middle|>",
                               "<|middle|>"};
const char* const kFimPad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
const char* const kFimRep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                               "<reponame>"};
const char* const kFimSep[] = {"<|file_sep|>"};

// GPT-2 byte-level decoding of a token text (llama_decode_text), including its odd marker for
// codepoints outside the byte alphabet.
std::string decode_byte_level(std::string_view text) {
    std::string out;
    const uint8_t* p = reinterpret_cast<const uint8_t*>(text.data());
    size_t i = 0;
    while (i < text.size()) {
        size_t len = 1;
        const uint32_t c = decode_utf8(p + i, text.size() - i, len);
        const int b = cpt_to_byte(c);
        if (b >= 0) {
            out.push_back(static_cast<char>(b));
        } else {
            std::string utf8;
            append_utf8(utf8, c);
            out += "[UNK_BYTE_0x";
            char hex[4];
            for (unsigned char u : utf8) {
                std::snprintf(hex, sizeof hex, "%02x", u);
                out += hex;
            }
            out.append(text.data(), text.size());
            out += "]";
        }
        i += len;
    }
    return out;
}

std::string unescape_spaces(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (i + 2 < text.size() && static_cast<uint8_t>(text[i]) == 0xE2 &&
            static_cast<uint8_t>(text[i + 1]) == 0x96 &&
            static_cast<uint8_t>(text[i + 2]) == 0x81) {
            out.push_back(' ');
            i += 2;
        } else {
            out.push_back(text[i]);
        }
    }
    return out;
}

uint8_t byte_of_token(std::string_view text) {
    // "<0xXX>": llama.cpp parses text[3:5] with strtol.
    std::string hex(text.size() >= 5 ? text.substr(3, 2) : std::string_view());
    return static_cast<uint8_t>(std::strtol(hex.c_str(), nullptr, 16));
}

}  // namespace

Vocab::Vocab(ModelKind kind, const StringTable& tokens, const std::vector<int32_t>& types,
             const std::vector<float>& scores, SpecialIds ids)
    : kind_(kind), scores_(scores), text_to_id_(tokens.size()), ids_(ids) {
    const size_t n = tokens.size();
    if (n == 0) throw std::invalid_argument("tokenizer: the vocabulary is empty");
    if (!types.empty() && types.size() < n)
        throw std::invalid_argument("tokenizer: " + std::to_string(types.size()) +
                                    " token types for " + std::to_string(n) + " tokens");
    if (!scores.empty() && scores.size() < n)
        throw std::invalid_argument("tokenizer: " + std::to_string(scores.size()) + " scores for " +
                                    std::to_string(n) + " tokens");
    scores_.resize(scores.empty() ? 0 : n);
    attr_.resize(n);
    texts_.data.reserve(tokens.data.size());
    for (size_t i = 0; i < n; ++i) {
        std::string_view t = tokens.get(i);
        std::string empty_name;
        if (t.empty()) {  // llama.cpp renames empty tokens
            empty_name = "[EMPTY_" + std::to_string(i) + "]";
            t = empty_name;
        }
        texts_.push(t);
        const int32_t prev = text_to_id_.insert(t.data(), t.size(), static_cast<int32_t>(i));
        if (prev != static_cast<int32_t>(i))
            throw std::invalid_argument("tokenizer: duplicate token '" + std::string(t) +
                                        "' has ids " + std::to_string(prev) + " and " +
                                        std::to_string(i));
        attr_[i] = types.empty() ? kAttrNormal : attr_of_type(types[i]);
    }
    for (int32_t* p :
         {&ids_.bos, &ids_.eos, &ids_.eot, &ids_.eom, &ids_.unk, &ids_.sep, &ids_.pad,
          &ids_.fim_pre, &ids_.fim_suf, &ids_.fim_mid, &ids_.fim_pad, &ids_.fim_rep, &ids_.fim_sep})
        if (*p >= static_cast<int32_t>(n)) *p = -1;  // llama.cpp disables out-of-range ids
    apply_text_overrides();
    build_pieces();
}

void Vocab::apply_text_overrides() {
    auto force_control = [&](const char* text) -> int32_t {
        const int32_t id = find(text, std::char_traits<char>::length(text));
        if (id >= 0) attr_[id] |= kAttrControl;
        return id;
    };
    struct Role {
        int32_t* id;
        const char* const* texts;
        size_t n;
    };
    const Role roles[] = {
        {&ids_.fim_pre, kFimPre, sizeof kFimPre / sizeof *kFimPre},
        {&ids_.fim_suf, kFimSuf, sizeof kFimSuf / sizeof *kFimSuf},
        {&ids_.fim_mid, kFimMid, sizeof kFimMid / sizeof *kFimMid},
        {&ids_.fim_pad, kFimPad, sizeof kFimPad / sizeof *kFimPad},
        {&ids_.fim_rep, kFimRep, sizeof kFimRep / sizeof *kFimRep},
        {&ids_.fim_sep, kFimSep, sizeof kFimSep / sizeof *kFimSep},
    };
    for (const Role& r : roles) {
        if (*r.id >= 0) continue;
        for (size_t k = 0; k < r.n; ++k) {
            const int32_t id = force_control(r.texts[k]);
            if (id >= 0 && *r.id < 0) *r.id = id;
        }
    }
    for (const char* t : kEotTexts) {
        if (ids_.eot >= 0) break;
        ids_.eot = force_control(t);
    }
    if (ids_.eom < 0) ids_.eom = force_control("<|eom_id|>");
    std::vector<int32_t> eog;
    for (int32_t id : {ids_.fim_pad, ids_.fim_rep, ids_.fim_sep})
        if (id >= 0) eog.push_back(id);
    for (const char* t : kEogTexts) {
        const int32_t id = force_control(t);
        if (id >= 0) eog.push_back(id);
    }
    // gpt-oss: these render as text even though the conversion marks them control.
    for (const char* t : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
        const int32_t id = find(t, std::char_traits<char>::length(t));
        if (id >= 0) attr_[id] = kAttrUserDefined;
    }
    for (int32_t id : {ids_.eos, ids_.eot, ids_.eom})
        if (id >= 0) eog.push_back(id);
    std::sort(eog.begin(), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
    eog_ = std::move(eog);
}

void Vocab::build_pieces() {
    const int32_t n = size();
    pieces_.data.reserve(texts_.data.size());
    pieces_.off.reserve(n + 1);
    for (int32_t id = 0; id < n; ++id) {
        const uint32_t a = attr_[id];
        const std::string_view t = texts_.get(id);
        if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
            pieces_.push(t);
        } else if (a & kAttrNormal) {
            if (kind_ == ModelKind::Spm) {
                pieces_.push(unescape_spaces(t));
            } else {
                pieces_.push(decode_byte_level(t));
            }
        } else if (a & kAttrByte) {
            const char b = static_cast<char>(byte_of_token(t));
            pieces_.push(std::string_view(&b, 1));
        } else {
            pieces_.push(std::string_view());
        }
    }
}

}  // namespace tok
}  // namespace pylm
