// The GPU inference engine: the CPU engine's forward (csrc/engine/model.cpp) with every tensor
// in device memory. Weights: device_weights.h. KV cache: f16 (or f32) pools in device memory,
// [n_layer][K|V][n_blocks * block_size, Hkv, D], with host-side block tables (block_tables.h).
//
// One forward call = one host->device copy of the step's int32 inputs (token ids, positions,
// cache slots, logit rows, context lengths, block tables: one pinned buffer), the layers, and one
// device->host copy of the requested logits. A decode batch (one token for each of S entries) is
// replayed from a CUDA graph captured per S: every pointer and size in it is fixed (the block
// tables sit in the step buffer at fixed offsets, paged attention is sized for n_ctx), so the
// graph stays valid as sequences grow. Scratch buffers grow on demand; growing drops the graphs.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common.cuh"
#include "engine/block_tables.h"
#include "engine/device_weights.h"

namespace pylm {
namespace cuda {

class DeviceEngine {
public:
    // Entries with at most this many new tokens attend through the paged decode kernel (decode,
    // speculative verification); longer ones gather their K/V and use flash attention (prefill).
    static constexpr int64_t kPagedMaxTq = 16;

    DeviceEngine(const ModelConfig& cfg, const ModelWeights& host, int64_t kv_blocks,
                 int block_size, DType kv_dtype, int device, bool use_graphs);
    ~DeviceEngine();
    DeviceEngine(const DeviceEngine&) = delete;
    DeviceEngine& operator=(const DeviceEngine&) = delete;

    const ModelConfig& config() const { return cfg_; }
    BlockTables& kv() { return *kv_; }
    int device() const { return device_; }
    DType kv_dtype() const { return kv_dtype_; }
    const DeviceWeights& weights() const { return *w_; }

    // Same contract as pylm::Engine::forward (csrc/engine/model.h); logits is host memory.
    int64_t forward(const std::vector<int>& seq_ids,
                    const std::vector<std::vector<int32_t>>& tokens, bool all_logits,
                    float* logits);
    int64_t logits_rows(const std::vector<std::vector<int32_t>>& tokens, bool all_logits) const;

    // CUDA graphs: on by default; a capture that fails turns them off (the reason is kept).
    bool graphs_enabled() const { return use_graphs_; }
    void set_graphs_enabled(bool on);
    const std::string& graph_error() const { return graph_error_; }
    int graphs_captured() const { return static_cast<int>(graphs_.size()); }
    // Benchmark hook: replays the graph of the last decode step `iters` times (same inputs, so
    // it rewrites the same cache rows with the same values) and returns seconds per step, timed
    // with CUDA events: GPU time without Python, host copies or sampling.
    double replay_last_decode(int iters);

private:
    struct Entry {
        int seq;
        int64_t start, n, row0;  // first position, token count, first row in the batch
    };
    struct Layout {  // int32 offsets of the step inputs in the step buffer
        int64_t ids, pos, slot, rows, ctx, bt, end;
    };
    Layout layout(int64_t N, int64_t R, int64_t E) const;
    void ensure_capacity(int64_t N, int64_t R, int64_t E, size_t attn_ws, int64_t kv_tmp_rows);
    void free_buffers();
    void drop_graphs();
    void copy_block(int32_t dst, int32_t src);
    // The model on the step buffer already on the device. uniform_tq > 0: every entry has that
    // many tokens (one paged attention launch); max_ctx sizes paged attention.
    void run(int64_t N, int64_t R, const std::vector<Entry>& entries, int64_t uniform_tq,
             bool identity_rows, int64_t max_ctx);
    cudaGraphExec_t capture(int64_t N, int64_t R, const std::vector<Entry>& entries,
                            int64_t uniform_tq, bool identity_rows, int64_t max_ctx);
    void attention(int il, const Layout& lay, const std::vector<Entry>& entries,
                   int64_t uniform_tq, int64_t max_ctx);
    // Runs every group of `groups` on h_ and returns each member's output pointer and row stride.
    void project(const std::vector<DevGroup>& groups, const std::vector<int64_t>& widths,
                 int64_t N, float* out, float** member, int64_t* ld);
    size_t paged_ws_bytes(int64_t S, int64_t tq, int64_t max_ctx) const;
    void* k_cache(int il) const;
    void* v_cache(int il) const;

    ModelConfig cfg_;
    int device_;
    DType kv_dtype_;
    bool use_graphs_;
    std::string graph_error_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<DeviceWeights> w_;
    std::unique_ptr<BlockTables> kv_;
    void* kv_pool_ = nullptr;  // [n_layer][2][n_slots, kv_dim]
    int64_t n_slots_ = 0, kv_dim_ = 0, max_blocks_ = 0;

    // Scratch (device f32), sized for cap_rows_ token rows and cap_logits_ logit rows.
    int64_t cap_rows_ = 0, cap_logits_ = 0, cap_ints_ = 0, cap_kv_tmp_ = 0;
    size_t cap_ws_ = 0;
    float* x_ = nullptr;     // [rows, C] residual stream
    float* h_ = nullptr;     // [rows, C] normed input of the next matmul
    float* proj_ = nullptr;  // [rows, qdim + 2 kvdim] q/k/v projections, by group
    float* q_ = nullptr;     // [rows, Hq, D] after QK-norm and RoPE
    float* att_ = nullptr;   // [rows, Hq * D]
    float* o_ = nullptr;     // [rows, C]
    float* gu_ = nullptr;    // [rows, 2F] gate/up projections, by group
    float* act_ = nullptr;   // [rows, F]
    float* logits_ = nullptr;  // [logit rows, V]
    float* kv_tmp_ = nullptr;  // [n_ctx, 2, kv_dim] one sequence's K/V for flash attention
    void* ws_ = nullptr;       // paged attention split-K workspace
    int32_t* d_step_ = nullptr;  // device copy of the step inputs
    int32_t* h_step_ = nullptr;  // pinned host staging

    // Decode graphs per batch size S, and how often S ran eagerly (capture on the second time).
    std::map<int64_t, cudaGraphExec_t> graphs_;
    std::map<int64_t, int> seen_;
    int64_t last_graph_S_ = 0;
};

}  // namespace cuda
}  // namespace pylm
