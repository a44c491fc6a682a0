// Byte-level BPE merge loops: see bpe.h.
#include "tokenizer/bpe.h"

#include <algorithm>
#include <climits>
#include <stdexcept>

#include "tokenizer/unicode.h"

namespace pylm {
namespace tok {

namespace {

// Raw bytes of a byte-level token text; false if some codepoint is outside the byte alphabet.
bool byte_level_to_raw(std::string_view text, std::string& raw) {
    raw.clear();
    const uint8_t* p = reinterpret_cast<const uint8_t*>(text.data());
    size_t i = 0;
    while (i < text.size()) {
        size_t len = 1;
        const uint32_t c = decode_utf8(p + i, text.size() - i, len);
        const int b = cpt_to_byte(c);
        if (b < 0 || (c == kReplacementChar && len == 1)) return false;
        raw.push_back(static_cast<char>(b));
        i += len;
    }
    return true;
}

// Heap order: lowest rank first, then leftmost.
struct HeapLess {
    bool operator()(const BpeScratch::Entry& a, const BpeScratch::Entry& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

}  // namespace

BpeModel::BpeModel(const Vocab& vocab, const StringTable& merges, bool ignore_merges)
    : vocab_(vocab),
      ignore_merges_(ignore_merges),
      n_vocab_(vocab.size()),
      raw_to_id_(vocab.size()) {
    std::string raw;
    for (int32_t id = 0; id < n_vocab_; ++id)
        if (byte_level_to_raw(vocab.text(id), raw)) raw_to_id_.insert(raw.data(), raw.size(), id);
    for (int b = 0; b < 256; ++b) {
        std::string t;
        append_utf8(t, byte_to_cpt(static_cast<uint8_t>(b)));
        byte_sym_[b] = symbol_id(t);
    }
    merges_.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
        const std::string_view line = merges.get(i);
        // llama.cpp splits at the first space after the first byte.
        const size_t sp = line.find(' ', 1);
        if (sp == std::string_view::npos) continue;
        const std::string left(line.substr(0, sp)), right(line.substr(sp + 1));
        if (left.empty() || right.empty()) continue;
        const int32_t a = symbol_id(left), b = symbol_id(right), m = symbol_id(left + right);
        merges_.insert(a, b, PairMap::Value{static_cast<int32_t>(i), m});
    }
}

int32_t BpeModel::symbol_id(const std::string& text) {
    const int32_t id = vocab_.find(text);
    if (id >= 0) return id;
    const int32_t next = n_vocab_ + static_cast<int32_t>(extra_text_.size());
    const int32_t got = extra_ids_.insert(text.data(), text.size(), next);
    if (got == next) extra_text_.push_back(text);
    return got;
}

void BpeModel::emit(int32_t sym, std::vector<int32_t>& out) const {
    if (sym < n_vocab_) {
        out.push_back(sym);
        return;
    }
    // Not a token: llama.cpp looks each byte of the symbol's text up as a one-byte token and
    // drops the bytes that are not tokens.
    for (char c : extra_text_[sym - n_vocab_]) {
        const int32_t id = vocab_.find(&c, 1);
        if (id >= 0) out.push_back(id);
    }
}

void BpeModel::merge_small(BpeScratch& sc, size_t n) const {
    int32_t* sym = sc.sym.data();
    int32_t* rank = sc.rank.data();
    int32_t* merged = sc.merged.data();
    auto lookup = [&](size_t i) {
        const PairMap::Value* v = merges_.find(sym[i], sym[i + 1]);
        rank[i] = v ? v->rank : INT32_MAX;
        merged[i] = v ? v->id : -1;
    };
    for (size_t i = 0; i + 1 < n; ++i) lookup(i);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; ++i)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == INT32_MAX) break;
        sym[best] = merged[best];
        for (size_t i = best + 1; i + 1 < n; ++i) {
            sym[i] = sym[i + 1];
            rank[i] = rank[i + 1];
            merged[i] = merged[i + 1];
        }
        --n;
        if (best + 1 < n) lookup(best);
        if (best > 0) lookup(best - 1);
    }
    sc.sym.resize(n);
}

size_t BpeModel::merge_heap(BpeScratch& sc, size_t n) const {
    int32_t* sym = sc.sym.data();
    sc.prev.resize(n);
    sc.next.resize(n);
    int32_t* prev = sc.prev.data();
    int32_t* next = sc.next.data();
    auto& heap = sc.heap;
    heap.clear();
    auto push = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const PairMap::Value* v = merges_.find(sym[l], sym[r]);
        if (!v) return;
        heap.push_back(BpeScratch::Entry{v->rank, l, r, sym[l], sym[r]});
        std::push_heap(heap.begin(), heap.end(), HeapLess());
    };
    for (size_t i = 0; i < n; ++i) {
        prev[i] = static_cast<int32_t>(i) - 1;
        next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    }
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), HeapLess());
        const BpeScratch::Entry e = heap.back();
        heap.pop_back();
        // Stale when either side was merged away or changed since the entry was pushed.
        if (sym[e.left] != e.sym_left || sym[e.right] != e.sym_right || next[e.left] != e.right)
            continue;
        const PairMap::Value* v = merges_.find(e.sym_left, e.sym_right);
        sym[e.left] = v->id;
        sym[e.right] = -1;
        next[e.left] = next[e.right];
        if (next[e.right] >= 0) prev[next[e.right]] = e.left;
        push(prev[e.left], e.left);
        push(e.left, next[e.left]);
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[m++] = sym[i];
    return m;
}

void BpeModel::encode_word(const uint8_t* w, size_t n, std::vector<int32_t>& out,
                           BpeScratch& sc) const {
    if (n > kSmallWord) {
        encode_word_heap(w, n, out, sc);
        return;
    }
    if (ignore_merges_) {
        const int32_t id = raw_to_id_.find(reinterpret_cast<const char*>(w), n);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    if (n == 1) {
        emit(byte_sym_[w[0]], out);
        return;
    }
    sc.sym.resize(n);
    sc.rank.resize(n);
    sc.merged.resize(n);
    for (size_t i = 0; i < n; ++i) sc.sym[i] = byte_sym_[w[i]];
    merge_small(sc, n);
    for (int32_t s : sc.sym) emit(s, out);
}

void BpeModel::encode_word_heap(const uint8_t* w, size_t n, std::vector<int32_t>& out,
                                BpeScratch& sc) const {
    if (ignore_merges_) {
        const int32_t id = raw_to_id_.find(reinterpret_cast<const char*>(w), n);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    sc.sym.resize(n);
    for (size_t i = 0; i < n; ++i) sc.sym[i] = byte_sym_[w[i]];
    const size_t m = merge_heap(sc, n);
    for (size_t i = 0; i < m; ++i) emit(sc.sym[i], out);
}

}  // namespace tok
}  // namespace pylm
