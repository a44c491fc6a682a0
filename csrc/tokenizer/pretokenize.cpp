// Pre-tokenizers: see pretokenize.h for the regexes. The matchers below walk codepoints of one
// segment [b, e); flag(i) is 0 past the segment end, which no codepoint has (every codepoint has
// exactly one class bit), so "past the end" never matches a class.
#include "tokenizer/pretokenize.h"

#include <stdexcept>

#include "tokenizer/unicode.h"

namespace pylm {
namespace tok {

namespace {

constexpr uint16_t kLN = kLetter | kNumber;
constexpr uint16_t kWLN = kWhiteSpace | kLetter | kNumber;

struct Segment {
    const uint32_t* cpt;
    const uint16_t* flags;
    const uint32_t* offs;
    size_t b, e;
    std::vector<Span>* out;
    size_t prev;  // end of the last emitted piece

    uint16_t flag(size_t i) const { return i < e ? flags[i] : 0; }
    uint32_t at(size_t i) const { return i < e ? cpt[i] : 0xFFFFFFFFu; }
    // Emits [prev, end) if non-empty; returns its length in codepoints.
    size_t emit(size_t end) {
        const size_t len = end - prev;
        if (len) out->push_back(Span{offs[prev], offs[end]});
        prev = end;
        return len;
    }
};

inline uint32_t ascii_lower(uint32_t c) {
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

// 's 't 'm 'd 're 've 'll at pos; returns the match length in codepoints (0 if none).
inline size_t contraction(const Segment& s, size_t pos, bool any_case) {
    if (s.cpt[pos] != '\'' || pos + 1 >= s.e) return 0;
    const uint32_t c1 = any_case ? ascii_lower(s.cpt[pos + 1]) : s.cpt[pos + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (pos + 2 >= s.e) return 0;
    const uint32_t c2 = any_case ? ascii_lower(s.cpt[pos + 2]) : s.cpt[pos + 2];
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

void split_gpt2(Segment& s) {
    size_t pos = s.b;
    while (pos < s.e) {
        const uint32_t c = s.cpt[pos];
        if (size_t k = contraction(s, pos, false)) {
            pos += s.emit(pos + k);
            continue;
        }
        uint16_t f2 = c == ' ' ? s.flag(pos + 1) : s.flags[pos];
        if (f2 & (kLetter | kNumber)) {  // ' ?\p{L}+' or ' ?\p{N}+'
            const uint16_t cls = (f2 & kLetter) ? kLetter : kNumber;
            pos += (c == ' ');
            while (s.flag(pos) & cls) ++pos;
            s.emit(pos);
            continue;
        }
        if (f2 && !(f2 & kWLN)) {  // ' ?[^\s\p{L}\p{N}]+'
            pos += (c == ' ');
            for (uint16_t g = s.flag(pos); g && !(g & kWLN); g = s.flag(++pos)) {
            }
            s.emit(pos);
            continue;
        }
        size_t nws = 0;
        while (s.flag(pos + nws) & kWhiteSpace) ++nws;
        if (nws > 1 && pos + nws < s.e) {  // '\s+(?!\S)': leave the last one to the next word
            pos += nws - 1;
            s.emit(pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            s.emit(pos);
            continue;
        }
        s.emit(++pos);
    }
}

void split_llama3(Segment& s, size_t max_digits) {
    size_t pos = s.b;
    while (pos < s.e) {
        const uint32_t c = s.cpt[pos];
        const uint16_t f = s.flags[pos];
        if (size_t k = contraction(s, pos, true)) {
            pos += s.emit(pos + k);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (!(c == '\r' || c == '\n' || (f & kNumber)) &&
            ((f & kLetter) || (s.flag(pos + 1) & kLetter))) {
            ++pos;
            while (s.flag(pos) & kLetter) ++pos;
            s.emit(pos);
            continue;
        }
        if (f & kNumber) {  // \p{N}{1,max_digits}
            size_t ini = pos;
            while (s.flag(pos) & kNumber) {
                if (++pos - ini >= max_digits) {
                    s.emit(pos);
                    ini = pos;
                }
            }
            s.emit(pos);
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        const uint16_t f2 = c == ' ' ? s.flag(pos + 1) : f;
        if (!(f2 & kWLN) && f) {
            pos += (c == ' ');
            for (uint16_t g = s.flag(pos); g && !(g & kWLN); g = s.flag(++pos)) {
            }
            while (s.at(pos) == '\r' || s.at(pos) == '\n') ++pos;
            s.emit(pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (s.flag(pos + nws) & kWhiteSpace) {
            const uint32_t c2 = s.cpt[pos + nws];
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            ++nws;
        }
        if (last_rn > 0) {  // '\s*[\r\n]+'
            pos = last_rn;
            s.emit(pos);
            continue;
        }
        if (nws > 1 && pos + nws < s.e) {  // '\s+(?!\S)'
            pos += nws - 1;
            s.emit(pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            s.emit(pos);
            continue;
        }
        s.emit(++pos);
    }
}

void decode_all(const char* text, size_t n, PretokScratch& sc) {
    const CptTable& t = cpt_table();
    sc.cpts.resize(n);
    sc.flags.resize(n);
    sc.offs.resize(n + 1);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(text);
    size_t i = 0, k = 0;
    while (i < n) {
        size_t len = 1;
        const uint32_t c = p[i] < 0x80 ? p[i] : decode_utf8(p + i, n - i, len);
        sc.cpts[k] = c;
        sc.flags[k] = cpt_flags(t, c);
        sc.offs[k] = static_cast<uint32_t>(i);
        ++k;
        i += len;
    }
    sc.offs[k] = static_cast<uint32_t>(n);
    sc.cpts.resize(k);
    sc.flags.resize(k);
    sc.offs.resize(k + 1);
}

}  // namespace

namespace {

// tokenizer.ggml.pre names whose pre-tokenizer regexes in llama.cpp (llm_tokenizer_bpe) are
// exactly one of the four implemented here.
struct PreName {
    const char* name;
    PreType type;
};
const PreName kPreNames[] = {
    {"gpt2", PreType::Gpt2},
    {"gpt-2", PreType::Gpt2},
    {"phi-2", PreType::Gpt2},
    {"mpt", PreType::Gpt2},
    {"olmo", PreType::Gpt2},
    {"jais", PreType::Gpt2},
    {"trillion", PreType::Gpt2},
    {"granite-docling", PreType::Gpt2},
    {"exaone4", PreType::Gpt2},
    {"gigachat", PreType::Gpt2},
    {"a.x-4.0", PreType::Gpt2},
    {"mellum", PreType::Gpt2},
    {"smollm", PreType::Smollm},
    {"starcoder", PreType::Smollm},
    {"refact", PreType::Smollm},
    {"command-r", PreType::Smollm},
    {"codeshell", PreType::Smollm},
    {"exaone", PreType::Smollm},
    {"minerva-7b", PreType::Smollm},
    {"llama-bpe", PreType::Llama3},
    {"llama3", PreType::Llama3},
    {"llama-v3", PreType::Llama3},
    {"falcon3", PreType::Llama3},
    {"falcon-h1", PreType::Llama3},
    {"pixtral", PreType::Llama3},
    {"midm-2.0", PreType::Llama3},
    {"lfm2", PreType::Llama3},
    {"dbrx", PreType::Llama3},
    {"smaug-bpe", PreType::Llama3},
    {"qwen2", PreType::Qwen2},
    {"deepseek-r1-qwen", PreType::Qwen2},
    {"megrez", PreType::Qwen2},
    {"stablelm2", PreType::Qwen2},
    {"hunyuan", PreType::Qwen2},
};

}  // namespace

bool parse_pre_type(const std::string& name, PreType& out) {
    for (const PreName& p : kPreNames) {
        if (name == p.name) {
            out = p.type;
            return true;
        }
    }
    return false;
}

std::string pre_type_names() {
    std::string s;
    for (const PreName& p : kPreNames) s += (s.empty() ? "" : ", ") + std::string(p.name);
    return s;
}

void pretokenize(PreType type, const char* text, size_t n, PretokScratch& sc,
                 std::vector<Span>& out) {
    out.clear();
    if (n == 0) return;
    decode_all(text, n, sc);
    Segment s{sc.cpts.data(), sc.flags.data(), sc.offs.data(), 0, sc.cpts.size(), &out, 0};
    switch (type) {
        case PreType::Gpt2:
            split_gpt2(s);
            break;
        case PreType::Smollm: {
            // Each \p{N} codepoint is a piece of its own; gpt2 splits the stretches between.
            const size_t m = sc.cpts.size();
            size_t i = 0;
            while (i < m) {
                if (sc.flags[i] & kNumber) {
                    out.push_back(Span{sc.offs[i], sc.offs[i + 1]});
                    ++i;
                    continue;
                }
                size_t j = i;
                while (j < m && !(sc.flags[j] & kNumber)) ++j;
                s.b = s.prev = i;
                s.e = j;
                split_gpt2(s);
                i = j;
            }
            break;
        }
        case PreType::Llama3:
            split_llama3(s, 3);
            break;
        case PreType::Qwen2:
            split_llama3(s, 1);
            break;
    }
}

bool is_clean_utf8(const char* text, size_t n) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(text);
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        size_t len = 1;
        const uint32_t c = decode_utf8(p + i, n - i, len);
        if ((c == kReplacementChar && len == 1) || c >= kMaxCodepoint) return false;
        i += len;
    }
    return true;
}

std::string sanitize_utf8(const char* text, size_t n) {
    std::string out;
    out.reserve(n + 16);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(text);
    size_t i = 0;
    while (i < n) {
        size_t len = 1;
        const uint32_t c = p[i] < 0x80 ? p[i] : decode_utf8(p + i, n - i, len);
        append_utf8(out, c);
        i += len;
    }
    return out;
}

}  // namespace tok
}  // namespace pylm
