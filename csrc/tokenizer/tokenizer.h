// A GGUF tokenizer: vocabulary + special-token partition + the model's encoder (byte-level BPE
// with a pre-tokenizer, or SentencePiece-style BPE), and the decoder. Encoding follows
// llama_vocab::impl::tokenize in llama.cpp so the ids are the ones llama.cpp produces.
//
// Thread safety: encode/decode are const and may run concurrently (the GIL is released around
// them); each call borrows a Worker (scratch buffers + word cache) from a small pool.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/special.h"
#include "tokenizer/spm.h"
#include "tokenizer/vocab.h"

namespace pylm {
namespace tok {

struct TokenizerOptions {
    ModelKind kind = ModelKind::Bpe;
    PreType pre = PreType::Gpt2;  // byte-level BPE only
    bool ignore_merges = false;   // byte-level BPE: whole-word tokens skip the merges
    bool add_bos = false, add_eos = false;
    bool add_space_prefix = false;  // SPM: ' ' before the text and after each special token
    SpecialIds ids;
};

// Cache of word -> ids for byte-level BPE (words repeat a lot in real text).
class WordCache {
public:
    static constexpr size_t kMaxWordBytes = 64;
    static constexpr size_t kMaxEntries = 1 << 17;

    // Appends the cached ids of word to out; false if absent.
    bool get(const char* w, size_t n, std::vector<int32_t>& out) const;
    void put(const char* w, size_t n, const int32_t* ids, size_t count);

private:
    StrMap index_;                  // word -> entry number
    std::vector<uint32_t> off_{0};  // entry k's ids are ids_[off_[k], off_[k + 1])
    std::vector<int32_t> ids_;
};

class Tokenizer {
public:
    Tokenizer(const StringTable& tokens, const std::vector<int32_t>& types,
              const std::vector<float>& scores, const StringTable& merges,
              const TokenizerOptions& opt);

    // Appends the ids of text[0, n) (UTF-8) to out.
    void encode(const char* text, size_t n, bool add_special, bool parse_special,
                std::vector<int32_t>& out) const;
    // Encodes each text, on up to `threads` threads (<= 0: the default).
    void encode_batch(const std::vector<std::string>& texts, bool add_special, bool parse_special,
                      int threads, std::vector<std::vector<int32_t>>& out) const;
    // Decoded bytes of ids; throws std::out_of_range naming the first bad id.
    std::string decode(const int32_t* ids, size_t n, bool skip_special) const;

    const Vocab& vocab() const { return *vocab_; }
    const TokenizerOptions& options() const { return opt_; }
    size_t n_merges() const { return bpe_ ? bpe_->n_merges() : 0; }
    // Test hook: BPE of one word through the heap path.
    std::vector<int32_t> bpe_word_heap(const std::string& word) const;

private:
    struct Worker {
        PretokScratch pre;
        std::vector<Span> spans;
        BpeScratch bpe;
        SpmScratch spm;
        std::vector<Fragment> frags, frags_tmp;
        std::string buf;
        std::vector<uint32_t> cuts;
        WordCache cache;
    };
    std::unique_ptr<Worker> acquire() const;
    void release(std::unique_ptr<Worker> w) const;
    void encode_with(Worker& w, const char* text, size_t n, bool add_special, bool parse_special,
                     std::vector<int32_t>& out) const;
    void encode_bpe_text(Worker& w, const char* text, size_t n, std::vector<int32_t>& out) const;
    void encode_spm_text(Worker& w, const char* text, size_t n, std::vector<int32_t>& out) const;

    TokenizerOptions opt_;
    std::unique_ptr<Vocab> vocab_;
    std::unique_ptr<BpeModel> bpe_;
    std::unique_ptr<SpmModel> spm_;
    std::unique_ptr<SpecialSplitter> special_;
    mutable std::mutex pool_mutex_;
    mutable std::vector<std::unique_ptr<Worker>> pool_;
};

}  // namespace tok
}  // namespace pylm
