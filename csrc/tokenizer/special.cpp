// Special-token partition: see special.h.
#include "tokenizer/special.h"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace pylm {
namespace tok {

SpecialSplitter::SpecialSplitter(const Vocab& vocab) : vocab_(vocab) {
    for (int32_t id = 0; id < vocab.size(); ++id)
        if (vocab.is_special(id)) order_.push_back(id);
    std::stable_sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
        return vocab.text(a).size() > vocab.text(b).size();
    });
    term_.push_back(-1);
    for (size_t k = 0; k < order_.size(); ++k) {
        const std::string_view t = vocab.text(order_[k]);
        int32_t node = 0;
        for (unsigned char c : t) {
            const PairMap::Value* e = edges_.find(node, c);
            if (e) {
                node = e->rank;
            } else {
                const int32_t child = static_cast<int32_t>(term_.size());
                term_.push_back(-1);
                edges_.insert(node, c, PairMap::Value{child, 0});
                node = child;
            }
        }
        if (!t.empty()) {
            term_[node] = static_cast<int32_t>(k);
            root_byte_[static_cast<unsigned char>(t[0])] = true;
        }
    }
}

void SpecialSplitter::split(const char* text, size_t n, bool parse_special,
                            std::vector<Fragment>& out, std::vector<Fragment>& tmp) const {
    out.clear();
    if (n == 0) return;
    out.push_back(Fragment{-1, 0, static_cast<uint32_t>(n)});
    if (order_.empty()) return;
    // Which special tokens occur anywhere (as order_ indices)?
    std::vector<int32_t> found;
    const unsigned char* p = reinterpret_cast<const unsigned char*>(text);
    for (size_t i = 0; i < n; ++i) {
        if (!root_byte_[p[i]]) continue;
        int32_t node = 0;
        for (size_t j = i; j < n; ++j) {
            const PairMap::Value* e = edges_.find(node, p[j]);
            if (!e) break;
            node = e->rank;
            const int32_t k = term_[node];
            if (k < 0) continue;
            const int32_t id = order_[k];
            if (parse_special || !vocab_.is_hidden(id)) found.push_back(k);
        }
    }
    if (found.empty()) return;
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());

    for (int32_t k : found) {
        const int32_t id = order_[k];
        const std::string_view tok = vocab_.text(id);
        tmp.clear();
        for (const Fragment& f : out) {
            if (f.token >= 0) {
                tmp.push_back(f);
                continue;
            }
            const std::string_view frag(text + f.begin, f.end - f.begin);
            size_t pos = 0;
            for (;;) {
                const size_t m = frag.find(tok, pos);
                if (m == std::string_view::npos) break;
                if (m > pos)
                    tmp.push_back(Fragment{-1, f.begin + static_cast<uint32_t>(pos),
                                           f.begin + static_cast<uint32_t>(m)});
                tmp.push_back(Fragment{id, 0, 0});
                pos = m + tok.size();
            }
            if (pos < frag.size())
                tmp.push_back(Fragment{-1, f.begin + static_cast<uint32_t>(pos), f.end});
        }
        out.swap(tmp);
    }
}

}  // namespace tok
}  // namespace pylm
