// Expands the generated codepoint-class ranges into a two-stage lookup table, and the GPT-2
// byte alphabet. See unicode.h.
#include "tokenizer/unicode.h"

#include <map>
#include <stdexcept>
#include <vector>

namespace pylm {
namespace tok {

namespace {

struct TableStore {
    std::vector<uint16_t> stage1, stage2;
    CptTable view{};

    TableStore() {
        std::vector<uint16_t> flat(kMaxCodepoint, kUndefined);
        for (int i = 0; i < kClassRangeCount; ++i) {
            const uint32_t b = kClassRangeStart[i];
            const uint32_t e = i + 1 < kClassRangeCount ? kClassRangeStart[i + 1] : kMaxCodepoint;
            for (uint32_t c = b; c < e; ++c) flat[c] = kClassRangeFlags[i];
        }
        for (int i = 0; i < kWhiteSpaceCount; ++i) flat[kWhiteSpaceCpts[i]] |= kWhiteSpace;
        // Deduplicate 128-codepoint blocks: most of the code space is a few distinct blocks.
        std::map<std::vector<uint16_t>, uint16_t> seen;
        stage1.resize(kMaxCodepoint / 128);
        for (uint32_t blk = 0; blk < kMaxCodepoint / 128; ++blk) {
            std::vector<uint16_t> v(flat.begin() + blk * 128, flat.begin() + (blk + 1) * 128);
            auto it = seen.find(v);
            if (it == seen.end()) {
                const uint16_t idx = static_cast<uint16_t>(seen.size());
                it = seen.emplace(std::move(v), idx).first;
                stage2.insert(stage2.end(), it->first.begin(), it->first.end());
            }
            stage1[blk] = it->second;
        }
        view.stage1 = stage1.data();
        view.stage2 = stage2.data();
    }
};

struct ByteAlphabet {
    uint32_t to_cpt[256];
    int16_t from_cpt[0x100 + 68];
    ByteAlphabet() {
        bool direct[256] = {};
        for (int b = 0x21; b <= 0x7E; ++b) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) to_cpt[b] = direct[b] ? static_cast<uint32_t>(b) : next++;
        for (auto& x : from_cpt) x = -1;
        for (int b = 0; b < 256; ++b) from_cpt[to_cpt[b]] = static_cast<int16_t>(b);
    }
};

const ByteAlphabet& alphabet() {
    static const ByteAlphabet a;
    return a;
}

}  // namespace

const CptTable& cpt_table() {
    static const TableStore store;
    return store.view;
}

void append_utf8(std::string& out, uint32_t cpt) {
    if (cpt < 0x80) {
        out.push_back(static_cast<char>(cpt));
    } else if (cpt < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt < kMaxCodepoint) {
        out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else {
        throw std::invalid_argument("invalid codepoint U+" + std::to_string(cpt) +
                                    " (beyond U+10FFFF) in the text");
    }
}

uint32_t byte_to_cpt(uint8_t b) {
    return alphabet().to_cpt[b];
}

int cpt_to_byte(uint32_t cpt) {
    return cpt < 0x100 + 68 ? alphabet().from_cpt[cpt] : -1;
}

}  // namespace tok
}  // namespace pylm
