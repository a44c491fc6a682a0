// The native inference engine: one decoder-only transformer (llama / gemma3 family) whose
// weights stay in their GGUF form (memory-mapped; the Python side owns the mapping), a paged KV
// cache, and a forward pass over a batch of tokens from one or more sequences.
//
// Architectures differ only through ModelConfig flags (QK-norm, post-norms, GeGLU vs SwiGLU,
// sliding-window layers, embedding scale, biases), so adding Qwen2/Qwen3/Phi-3-style models is
// a matter of filling the config and the weight table in pylm/arch.py.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "engine/kv_cache.h"
#include "quant/blocks.h"

namespace pylm {

// A weight tensor: ne0 = row length (contiguous, K), ne1 = number of rows (N). data == nullptr
// means absent (optional tensors: biases, QK-norms, post-norms).
struct WeightRef {
    const void* data = nullptr;
    QType type = QType::F32;
    int64_t ne0 = 0, ne1 = 1;
    // The engine's packed copy of a legacy-quantized matrix (qdot.h), when the ISA active at
    // load time has packed kernels: the matmuls read it while the active ISA still has them;
    // everything else (embedding rows, the screened head's rows) reads `data`.
    const void* packed = nullptr;
    explicit operator bool() const { return data != nullptr; }
};

struct LayerWeights {
    WeightRef attn_norm, wq, wk, wv, wo, bq, bk, bv, bo;
    WeightRef q_norm, k_norm, post_attn_norm;
    WeightRef ffn_norm, w_gate, w_up, w_down, post_ffn_norm;
    bool sliding = false;  // sliding-window attention layer
    float rope_base = 10000.0f;
};

struct ModelWeights {
    WeightRef tok_embd, output_norm, output;  // output may be tok_embd (tied)
    std::vector<LayerWeights> layers;
};

enum class Activation : int { SiLU = 0, GeluTanh = 1 };

struct ModelConfig {
    int n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, n_vocab = 0;
    int64_t n_ctx = 0;          // maximum positions per sequence
    float eps = 1e-5f;
    int rope_mode = 0;          // 0 normal (adjacent pairs), 2 NeoX (halves)
    int rope_dims = 0;          // rotated dims per head (<= head_dim)
    float rope_freq_scale = 1.0f;
    int64_t window = 0;         // sliding window of the `sliding` layers
    float embed_scale = 1.0f;   // gemma: sqrt(n_embd)
    float attn_scale = 0.0f;    // 0: 1/sqrt(head_dim)
    float attn_softcap = 0.0f;
    float final_softcap = 0.0f;
    Activation act = Activation::SiLU;
};

class Engine {
public:
    // repack: give the matmul weights of a packable type (Q4_0, Q4_1, Q8_0) a packed copy
    // (qdot.h) when the active ISA has packed kernels (AVX2, AVX-512): AVX-512 decode matvecs take
    // 0.6-0.85 of the time, for extra memory of their size (llama.cpp's CPU repack, likewise).
    Engine(const ModelConfig& cfg, ModelWeights weights, int64_t kv_blocks, int block_size, int threads,
           bool repack = true);

    const ModelConfig& config() const { return cfg_; }
    PagedKVCache& kv() { return kv_; }
    int threads() const { return threads_; }
    void set_threads(int n) { threads_ = n; }

    // Logits only for token ids [0, n) (the rest: -inf): the output head shrinks to its first n
    // rows. For drafting with a frequency-ranked vocabulary prefix (FR-Spec: a BPE vocabulary's
    // ids roughly follow merge order, i.e. frequency). 1 <= n <= n_vocab (std::invalid_argument).
    int64_t head_rows() const { return head_rows_; }
    void set_head_rows(int64_t n);

    // Screened output head, for greedy drafting: every logit comes from a Q4_0 copy of the head
    // (built here, from the head's own rows), then the k rows with the largest screened logits
    // are recomputed with the head itself, bit-identical to the unscreened logits. The argmax
    // is the head's own unless it lies outside the copy's top k. A Q8_0 head (SmolLM2) reads
    // 0.53 of its bytes. k = 0: off. 0 <= k <= n_vocab, K % 32 == 0 and a head type with a
    // dequantizer (std::invalid_argument).
    int head_screen() const { return screen_k_; }
    void set_head_screen(int k);

    // Bytes of the packed weight copies (repack; the screened head's copy included).
    int64_t repacked_bytes() const;

    // Runs tokens[i] (appended at the current end of sequence seq_ids[i]) through the model.
    // Writes logits into `logits`: for every token when all_logits, else for the last token of
    // each entry, in order: [n_rows, n_vocab]. Returns the number of rows written.
    // Throws std::out_of_range (bad token id / sequence), std::invalid_argument (context
    // exceeded), KVPoolExhausted — all before any state changes.
    int64_t forward(const std::vector<int>& seq_ids, const std::vector<std::vector<int32_t>>& tokens,
                    bool all_logits, float* logits);

    int64_t logits_rows(const std::vector<std::vector<int32_t>>& tokens, bool all_logits) const;

private:
    void embed(const int32_t* ids, int64_t n, float* x);
    struct Proj {
        const WeightRef* w;
        const WeightRef* bias;
        float* y;
        int64_t rows = 0;  // output rows of W computed (0: all); y keeps W's row stride
    };
    // y = x @ W^T (+ bias) for several weights reading the same x [M, K]: x is quantized to
    // 8-bit blocks once per activation format, not once per weight.
    void linear(const float* x, int64_t M, std::initializer_list<Proj> projs);
    // logits [R, n_vocab] (rows < head_rows) of the normed rows x [R, n_embd] through the
    // screened head (set_head_screen).
    void screened_head(const float* x, int64_t R, float* logits);
    void attention(int il, const std::vector<int>& row_seq, const std::vector<int64_t>& row_pos,
                   const float* q, float* out);

    ModelConfig cfg_;
    ModelWeights w_;
    PagedKVCache kv_;
    int threads_;
    int64_t head_rows_;
    int screen_k_ = 0;
    std::vector<uint8_t> screen_;  // the Q4_0 copy of the output head
    std::vector<uint8_t> screen_packed_;
    WeightRef screen_w_;
    bool repack_;
    std::vector<std::vector<uint8_t>> packed_;  // the packed copies the WeightRefs point into
    // The packed copy of w into `store` and w.packed (nothing when w's type has no packed
    // kernel on the active ISA, or repacking is off).
    void pack(WeightRef& w, std::vector<uint8_t>& store);
    std::vector<uint8_t> act_[2];  // quantized activations (Q8S, Q8K), reused across calls
};

}  // namespace pylm
