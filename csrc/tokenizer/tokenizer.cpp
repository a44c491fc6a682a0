// Tokenizer: encode = special-token partition, then per text fragment the model's encoder;
// decode = concatenated token pieces. See tokenizer.h.
#include "tokenizer/tokenizer.h"

#include <stdexcept>

#include "core/thread_pool.h"

namespace pylm {
namespace tok {

bool WordCache::get(const char* w, size_t n, std::vector<int32_t>& out) const {
    const int32_t k = index_.find(w, n);
    if (k < 0) return false;
    out.insert(out.end(), ids_.begin() + off_[k], ids_.begin() + off_[k + 1]);
    return true;
}

void WordCache::put(const char* w, size_t n, const int32_t* ids, size_t count) {
    if (index_.size() >= kMaxEntries) {  // full: start over (cheap, and keeps memory bounded)
        index_.clear();
        off_.assign(1, 0);
        ids_.clear();
    }
    const int32_t k = static_cast<int32_t>(off_.size() - 1);
    if (index_.insert(w, n, k) != k) return;
    ids_.insert(ids_.end(), ids, ids + count);
    off_.push_back(static_cast<uint32_t>(ids_.size()));
}

Tokenizer::Tokenizer(const StringTable& tokens, const std::vector<int32_t>& types,
                     const std::vector<float>& scores, const StringTable& merges,
                     const TokenizerOptions& opt)
    : opt_(opt) {
    vocab_ = std::make_unique<Vocab>(opt.kind, tokens, types, scores, opt.ids);
    opt_.ids = vocab_->ids();
    if (opt.kind == ModelKind::Bpe)
        bpe_ = std::make_unique<BpeModel>(*vocab_, merges, opt.ignore_merges);
    else
        spm_ = std::make_unique<SpmModel>(*vocab_);
    special_ = std::make_unique<SpecialSplitter>(*vocab_);
    if (opt_.add_bos && opt_.ids.bos < 0)
        throw std::invalid_argument(
            "tokenizer: add_bos_token is true but there is no bos_token_id");
    if (opt_.add_eos && opt_.ids.eos < 0)
        throw std::invalid_argument(
            "tokenizer: add_eos_token is true but there is no eos_token_id");
}

std::unique_ptr<Tokenizer::Worker> Tokenizer::acquire() const {
    {
        std::lock_guard<std::mutex> lk(pool_mutex_);
        if (!pool_.empty()) {
            std::unique_ptr<Worker> w = std::move(pool_.back());
            pool_.pop_back();
            return w;
        }
    }
    return std::make_unique<Worker>();
}

void Tokenizer::release(std::unique_ptr<Worker> w) const {
    std::lock_guard<std::mutex> lk(pool_mutex_);
    if (pool_.size() < 64) pool_.push_back(std::move(w));
}

void Tokenizer::encode_bpe_text(Worker& w, const char* text, size_t n,
                                std::vector<int32_t>& out) const {
    if (!is_clean_utf8(text, n)) {  // llama.cpp substitutes U+FFFD for malformed bytes
        const std::string clean = sanitize_utf8(text, n);
        encode_bpe_text(w, clean.data(), clean.size(), out);
        return;
    }
    pretokenize(opt_.pre, text, n, w.pre, w.spans);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(text);
    for (const Span& s : w.spans) {
        const size_t len = s.end - s.begin;
        const char* word = text + s.begin;
        if (len <= WordCache::kMaxWordBytes) {
            if (w.cache.get(word, len, out)) continue;
            const size_t before = out.size();
            bpe_->encode_word(p + s.begin, len, out, w.bpe);
            w.cache.put(word, len, out.data() + before, out.size() - before);
        } else {
            bpe_->encode_word(p + s.begin, len, out, w.bpe);
        }
    }
}

void Tokenizer::encode_spm_text(Worker& w, const char* text, size_t n,
                                std::vector<int32_t>& out) const {
    if (!is_clean_utf8(text, n)) {  // raw bytes: keep llama.cpp's character split, no words
        spm_->encode(text, n, out, w.spm);
        return;
    }
    w.cuts.clear();
    spm_->split_points(text, n, w.cuts);
    w.cuts.push_back(static_cast<uint32_t>(n));
    size_t begin = 0;
    for (uint32_t end : w.cuts) {
        const char* word = text + begin;
        const size_t len = end - begin;
        begin = end;
        if (len > WordCache::kMaxWordBytes) {
            spm_->encode(word, len, out, w.spm);
            continue;
        }
        if (w.cache.get(word, len, out)) continue;
        const size_t before = out.size();
        spm_->encode(word, len, out, w.spm);
        w.cache.put(word, len, out.data() + before, out.size() - before);
    }
}

void Tokenizer::encode_with(Worker& w, const char* text, size_t n, bool add_special,
                            bool parse_special, std::vector<int32_t>& out) const {
    if (n >= (size_t(1) << 31))  // spans are 32-bit byte offsets
        throw std::invalid_argument("tokenizer: text of " + std::to_string(n) +
                                    " bytes is too long (max 2 GiB)");
    if (add_special && opt_.add_bos) out.push_back(opt_.ids.bos);
    special_->split(text, n, parse_special, w.frags, w.frags_tmp);
    bool prev_special = true;  // SPM: a space prefix goes before the first text fragment
    for (const Fragment& f : w.frags) {
        if (f.token >= 0) {
            out.push_back(f.token);
            prev_special = true;
            continue;
        }
        const char* t = text + f.begin;
        const size_t len = f.end - f.begin;
        if (bpe_) {
            encode_bpe_text(w, t, len, out);
        } else {
            w.buf.clear();
            if (opt_.add_space_prefix && prev_special) w.buf.append("\xE2\x96\x81", 3);
            escape_spaces(t, len, w.buf);
            encode_spm_text(w, w.buf.data(), w.buf.size(), out);
        }
        prev_special = false;
    }
    if (add_special && opt_.add_eos) out.push_back(opt_.ids.eos);
}

void Tokenizer::encode(const char* text, size_t n, bool add_special, bool parse_special,
                       std::vector<int32_t>& out) const {
    std::unique_ptr<Worker> w = acquire();
    try {
        encode_with(*w, text, n, add_special, parse_special, out);
    } catch (...) {
        release(std::move(w));
        throw;
    }
    release(std::move(w));
}

void Tokenizer::encode_batch(const std::vector<std::string>& texts, bool add_special,
                             bool parse_special, int threads,
                             std::vector<std::vector<int32_t>>& out) const {
    out.assign(texts.size(), {});
    std::exception_ptr error;
    std::mutex error_mutex;
    parallel_for(static_cast<int64_t>(texts.size()), 1, threads, [&](int64_t b, int64_t e, int) {
        std::unique_ptr<Worker> w = acquire();
        try {
            for (int64_t i = b; i < e; ++i)
                encode_with(*w, texts[i].data(), texts[i].size(), add_special, parse_special,
                            out[i]);
        } catch (...) {
            std::lock_guard<std::mutex> lk(error_mutex);
            if (!error) error = std::current_exception();
        }
        release(std::move(w));
    });
    if (error) std::rethrow_exception(error);
}

std::string Tokenizer::decode(const int32_t* ids, size_t n, bool skip_special) const {
    const int32_t nv = vocab_->size();
    for (size_t i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= nv)
            throw std::out_of_range("token id " + std::to_string(ids[i]) + " at position " +
                                    std::to_string(i) + " is out of range [0, " +
                                    std::to_string(nv) + ")");
    // Like llama_detokenize: one leading space is dropped when the encoder adds it, and
    // skip_special also drops a leading BOS / trailing EOS the encoder would add.
    bool strip_space = opt_.add_space_prefix;
    if (skip_special && opt_.add_bos && n > 0 && ids[0] == opt_.ids.bos) {
        strip_space = false;
        ++ids;
        --n;
    }
    if (skip_special && opt_.add_eos && n > 0 && ids[n - 1] == opt_.ids.eos) --n;
    std::string out;
    for (size_t i = 0; i < n; ++i) {
        if (skip_special && vocab_->is_hidden(ids[i])) {
            strip_space = false;
            continue;
        }
        std::string_view p = vocab_->piece(ids[i]);
        if (strip_space && !p.empty() && p[0] == ' ') p.remove_prefix(1);
        strip_space = false;
        out.append(p.data(), p.size());
    }
    return out;
}

std::vector<int32_t> Tokenizer::bpe_word_heap(const std::string& word) const {
    if (!bpe_) throw std::invalid_argument("bpe_word_heap: not a byte-level BPE tokenizer");
    std::vector<int32_t> out;
    BpeScratch sc;
    if (!word.empty())
        bpe_->encode_word_heap(reinterpret_cast<const uint8_t*>(word.data()), word.size(), out, sc);
    return out;
}

}  // namespace tok
}  // namespace pylm
