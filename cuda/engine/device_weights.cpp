// Upload of the GGUF weights into one device arena (see device_weights.h).
#include "engine/device_weights.h"

#include <cuda_runtime.h>

#include <functional>
#include <stdexcept>
#include <unordered_map>

#include "dequant.cuh"
#include "qmatmul.cuh"
#include "quant/blocks.h"

namespace pylm {
namespace cuda {

namespace {

int64_t nbytes(const WeightRef& w) {
    const QTypeInfo* info = qtype_info(w.type);
    return w.ne0 / info->block_size * info->type_size * w.ne1;
}

// Where each host tensor goes in the arena. Tensors are placed in the order they are added; a
// tensor that continues a group is placed right after the previous one (no alignment gap).
struct Layout {
    struct Item {
        const void* host;
        int64_t bytes, offset;
    };
    std::vector<Item> items;
    std::unordered_map<const void*, int64_t> seen;  // tied weights are uploaded once
    int64_t end = 0;

    enum Mode { kShared, kAligned, kContiguous };
    // kShared: reuse the copy of a tensor placed before (tied embeddings), else as kAligned;
    // kAligned: a fresh copy at a 256-byte boundary; kContiguous: right after the previous one.
    int64_t place(const WeightRef& w, Mode mode) {
        auto it = seen.find(w.data);
        if (it != seen.end() && mode == kShared) return it->second;
        if (mode != kContiguous) end = (end + 255) / 256 * 256;
        const int64_t off = end;
        items.push_back({w.data, nbytes(w), off});
        seen.emplace(w.data, off);
        end += nbytes(w);
        return off;
    }
};

void check_vector(const WeightRef& w, int64_t n, const std::string& what) {
    if (!w) return;
    if (w.type != QType::F32 || w.ne0 * w.ne1 != n)
        throw std::invalid_argument(what + ": expected " + std::to_string(n) +
                                    " float32 values, got type " + qtype_info(w.type)->name +
                                    " with " + std::to_string(w.ne0 * w.ne1));
}

void check_matrix(const WeightRef& w, int64_t K, int64_t N, const std::string& what) {
    if (w.ne0 != K || w.ne1 != N)
        throw std::invalid_argument(what + ": shape [" + std::to_string(w.ne1) + ", " +
                                    std::to_string(w.ne0) + "], expected [" + std::to_string(N) +
                                    ", " + std::to_string(K) + "]");
    if (!qmatmul_supported(static_cast<int>(w.type)))
        throw std::invalid_argument(what + ": tensor type " + qtype_info(w.type)->name +
                                    " is not supported by the CUDA qmatmul");
}

}  // namespace

DeviceWeights::DeviceWeights(const ModelConfig& cfg, const ModelWeights& host) {
    const int64_t C = cfg.n_embd, D = cfg.head_dim, F = cfg.n_ff;
    const int64_t qdim = static_cast<int64_t>(cfg.n_head) * D;
    const int64_t kvdim = static_cast<int64_t>(cfg.n_head_kv) * D;
    if (host.layers.size() != static_cast<size_t>(cfg.n_layer))
        throw std::invalid_argument("weights have " + std::to_string(host.layers.size()) +
                                    " layers, config says " + std::to_string(cfg.n_layer));
    // ---- validate ----
    if (host.tok_embd.ne0 != C || host.tok_embd.ne1 != cfg.n_vocab)
        throw std::invalid_argument("tok_embd: shape does not match n_embd / n_vocab");
    if (host.tok_embd.type != QType::F32 && !dequant_supported(static_cast<int>(host.tok_embd.type)))
        throw std::invalid_argument(std::string("tok_embd: tensor type ") +
                                    qtype_info(host.tok_embd.type)->name +
                                    " has no CUDA dequantizer (embedding lookup)");
    check_matrix(host.output, C, cfg.n_vocab, "output");
    check_vector(host.output_norm, C, "output_norm");
    for (int il = 0; il < cfg.n_layer; ++il) {
        const LayerWeights& L = host.layers[il];
        const std::string p = "layer." + std::to_string(il) + ".";
        check_vector(L.attn_norm, C, p + "attn_norm");
        check_vector(L.ffn_norm, C, p + "ffn_norm");
        check_vector(L.post_attn_norm, C, p + "post_attn_norm");
        check_vector(L.post_ffn_norm, C, p + "post_ffn_norm");
        check_vector(L.q_norm, D, p + "q_norm");
        check_vector(L.k_norm, D, p + "k_norm");
        check_vector(L.bq, qdim, p + "bq");
        check_vector(L.bk, kvdim, p + "bk");
        check_vector(L.bv, kvdim, p + "bv");
        check_vector(L.bo, C, p + "bo");
        check_matrix(L.wq, C, qdim, p + "wq");
        check_matrix(L.wk, C, kvdim, p + "wk");
        check_matrix(L.wv, C, kvdim, p + "wv");
        check_matrix(L.wo, qdim, C, p + "wo");
        check_matrix(L.w_gate, C, F, p + "w_gate");
        check_matrix(L.w_up, C, F, p + "w_up");
        check_matrix(L.w_down, F, C, p + "w_down");
    }

    // ---- place ----
    Layout lay;
    // Fixups: (arena offset -> pointer) applied once the arena exists.
    std::vector<std::function<void(const char*)>> fix;
    auto vec = [&](const WeightRef& w, const float** dst) {
        if (!w) return;
        const int64_t off = lay.place(w, Layout::kShared);
        fix.push_back([dst, off](const char* base) { *dst = reinterpret_cast<const float*>(base + off); });
    };
    auto mat = [&](const WeightRef& w, DevWeight* dst) {
        const int64_t off = lay.place(w, Layout::kShared);
        *dst = DevWeight{nullptr, static_cast<int>(w.type), w.ne0, w.ne1};
        fix.push_back([dst, off](const char* base) { dst->ptr = base + off; });
        matmul_bytes_ += nbytes(w);
    };
    // Projections of one input: same type and K -> one group, placed back to back.
    auto groups = [&](std::vector<const WeightRef*> ws, std::vector<DevGroup>* out) {
        out->clear();
        int64_t col = 0;
        for (size_t j = 0; j < ws.size(); ++j) {
            const WeightRef& w = *ws[j];
            const bool join = !out->empty() && out->back().w.qtype == static_cast<int>(w.type) &&
                              out->back().w.K == w.ne0;
            const int64_t off = lay.place(w, join ? Layout::kContiguous : Layout::kAligned);
            matmul_bytes_ += nbytes(w);
            if (join) {
                out->back().w.N += w.ne1;
                out->back().count += 1;
            } else {
                DevGroup g;
                g.w = DevWeight{nullptr, static_cast<int>(w.type), w.ne0, w.ne1};
                g.first = static_cast<int>(j);
                g.count = 1;
                g.col0 = col;
                out->push_back(g);
                const size_t gi = out->size() - 1;
                fix.push_back([out, gi, off](const char* base) { (*out)[gi].w.ptr = base + off; });
            }
            col += w.ne1;
        }
    };

    {  // the embedding table: the elementwise embedding launcher reads it as GGUF bytes
        const int64_t off = lay.place(host.tok_embd, Layout::kShared);
        tok_embd = DevWeight{nullptr, static_cast<int>(host.tok_embd.type), host.tok_embd.ne0,
                             host.tok_embd.ne1};
        fix.push_back([this, off](const char* base) { tok_embd.ptr = base + off; });
    }
    mat(host.output, &output);
    vec(host.output_norm, &output_norm);
    layers.resize(cfg.n_layer);
    for (int il = 0; il < cfg.n_layer; ++il) {
        const LayerWeights& L = host.layers[il];
        DevLayer& d = layers[il];
        vec(L.attn_norm, &d.attn_norm);
        vec(L.ffn_norm, &d.ffn_norm);
        vec(L.post_attn_norm, &d.post_attn_norm);
        vec(L.post_ffn_norm, &d.post_ffn_norm);
        vec(L.q_norm, &d.q_norm);
        vec(L.k_norm, &d.k_norm);
        vec(L.bq, &d.bq);
        vec(L.bk, &d.bk);
        vec(L.bv, &d.bv);
        vec(L.bo, &d.bo);
        groups({&L.wq, &L.wk, &L.wv}, &d.qkv);
        groups({&L.w_gate, &L.w_up}, &d.gate_up);
        mat(L.wo, &d.wo);
        mat(L.w_down, &d.w_down);
        d.sliding = L.sliding;
        d.rope_base = L.rope_base;
    }

    // ---- upload ----
    bytes_ = lay.end;
    PYLM_CUDA_CHECK(cudaMalloc(&arena_, static_cast<size_t>(bytes_ > 0 ? bytes_ : 1)));
    try {
        for (const auto& it : lay.items)
            PYLM_CUDA_CHECK(cudaMemcpy(static_cast<char*>(arena_) + it.offset, it.host,
                                       static_cast<size_t>(it.bytes), cudaMemcpyHostToDevice));
    } catch (...) {
        cudaFree(arena_);
        throw;
    }
    for (auto& f : fix) f(static_cast<const char*>(arena_));
}

DeviceWeights::~DeviceWeights() {
    if (arena_) cudaFree(arena_);
}

}  // namespace cuda
}  // namespace pylm
