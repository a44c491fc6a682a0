// SentencePiece-style BPE: see spm.h.
#include "tokenizer/spm.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string_view>

#include "tokenizer/unicode.h"

namespace pylm {
namespace tok {

namespace {

constexpr std::string_view kSpace("\xE2\x96\x81", 3);  // U+2581

// Heap order: highest score first, then leftmost.
struct BigramLess {
    bool operator()(const SpmScratch::Bigram& a, const SpmScratch::Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

}  // namespace

SpmModel::SpmModel(const Vocab& vocab) : vocab_(vocab) {
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
        const char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = vocab.find(name, 6);
        if (id < 0) {  // llama.cpp falls back to the byte itself as a token
            const char c = static_cast<char>(b);
            id = vocab.find(&c, 1);
        }
        byte_tok_[b] = id;
    }
    for (int32_t id = 0; id < vocab.size(); ++id) {
        const std::string_view t = vocab.text(id);
        for (size_t p = t.find(kSpace, 1); p != std::string_view::npos; p = t.find(kSpace, p + 1)) {
            size_t b = p - 1;  // back to the lead byte of the preceding character
            while (b > 0 && (static_cast<uint8_t>(t[b]) & 0xC0) == 0x80) --b;
            before_space_.insert(t.data() + b, p - b, 1);
        }
    }
}

void SpmModel::split_points(const char* text, size_t n, std::vector<uint32_t>& cuts) const {
    const std::string_view s(text, n);
    for (size_t p = s.find(kSpace, 1); p != std::string_view::npos; p = s.find(kSpace, p + 1)) {
        size_t b = p - 1;
        while (b > 0 && (static_cast<uint8_t>(s[b]) & 0xC0) == 0x80) --b;
        if (before_space_.find(text + b, p - b) < 0) cuts.push_back(static_cast<uint32_t>(p));
    }
}

void SpmModel::encode(const char* text, size_t n, std::vector<int32_t>& out, SpmScratch& sc) const {
    if (n == 0) return;
    auto& sym = sc.sym;
    auto& heap = sc.heap;
    sym.clear();
    heap.clear();
    for (size_t off = 0; off < n;) {
        const size_t len = std::min(utf8_len(static_cast<uint8_t>(text[off])), n - off);
        const int32_t i = static_cast<int32_t>(sym.size());
        sym.push_back(SpmScratch::Sym{static_cast<uint32_t>(off), static_cast<uint32_t>(len), i - 1,
                                      off + len == n ? -1 : i + 1, -1});
        off += len;
    }
    auto try_add = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const uint32_t len = sym[l].len + sym[r].len;
        const int32_t id = vocab_.find(text + sym[l].begin, len);
        if (id < 0) return;
        heap.push_back(SpmScratch::Bigram{vocab_.score(id), l, r, len, id});
        std::push_heap(heap.begin(), heap.end(), BigramLess());
    };
    for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), BigramLess());
        const SpmScratch::Bigram bg = heap.back();
        heap.pop_back();
        SpmScratch::Sym& l = sym[bg.left];
        SpmScratch::Sym& r = sym[bg.right];
        // Stale: one side was merged away or grew since the bigram was queued.
        if (l.len == 0 || r.len == 0 || l.len + r.len != bg.len) continue;
        l.len += r.len;
        l.id = bg.id;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = bg.left;
        try_add(l.prev, bg.left);
        try_add(bg.left, l.next);
    }
    for (int32_t i = 0; i != -1; i = sym[i].next) {
        const SpmScratch::Sym& s = sym[i];
        int32_t id = s.id >= 0 ? s.id : vocab_.find(text + s.begin, s.len);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (uint32_t k = 0; k < s.len; ++k) {
            const uint8_t b = static_cast<uint8_t>(text[s.begin + k]);
            if (byte_tok_[b] < 0) {
                char msg[64];
                std::snprintf(msg, sizeof msg,
                              "tokenizer: no byte token <0x%02X> for byte fallback", b);
                throw std::runtime_error(msg);
            }
            out.push_back(byte_tok_[b]);
        }
    }
}

void escape_spaces(const char* text, size_t n, std::string& out) {
    for (size_t i = 0; i < n; ++i) {
        if (text[i] == ' ')
            out.append("\xE2\x96\x81", 3);
        else
            out.push_back(text[i]);
    }
}

}  // namespace tok
}  // namespace pylm
