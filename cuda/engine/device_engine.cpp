// The GPU engine's host side: buffers, the per-call plan, eager runs and CUDA graphs. The
// forward pass itself is run(); see device_engine.h for the design.
#include "engine/device_engine.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "attention.cuh"
#include "elementwise.cuh"
#include "engine/engine_kernels.cuh"
#include "qmatmul.cuh"

namespace pylm {
namespace cuda {

namespace {

struct DeviceGuard {
    explicit DeviceGuard(int device) { PYLM_CUDA_CHECK(cudaSetDevice(device)); }
};

template <typename T>
void dev_free(T*& p) {
    if (p) cudaFree(p);
    p = nullptr;
}

template <typename T>
void dev_alloc(T*& p, size_t bytes) {
    void* q = nullptr;
    PYLM_CUDA_CHECK(cudaMalloc(&q, bytes ? bytes : 1));
    p = static_cast<T*>(q);
}

}  // namespace

DeviceEngine::DeviceEngine(const ModelConfig& cfg, const ModelWeights& host, int64_t kv_blocks,
                           int block_size, DType kv_dtype, int device, bool use_graphs)
    : cfg_(cfg), device_(device), kv_dtype_(kv_dtype), use_graphs_(use_graphs) {
    if (cfg_.n_head <= 0 || cfg_.n_head_kv <= 0 || cfg_.n_head % cfg_.n_head_kv != 0)
        throw std::invalid_argument("n_head=" + std::to_string(cfg_.n_head) +
                                    " is not a multiple of n_head_kv=" + std::to_string(cfg_.n_head_kv));
    if (cfg_.head_dim <= 0 || cfg_.head_dim % 2 != 0)
        throw std::invalid_argument("head_dim=" + std::to_string(cfg_.head_dim) + " must be even");
    if (cfg_.n_ctx <= 0 || cfg_.n_ctx > INT32_MAX)
        throw std::invalid_argument("n_ctx=" + std::to_string(cfg_.n_ctx) + " out of range");
    if (kv_dtype != DType::F16 && kv_dtype != DType::F32)
        throw std::invalid_argument(std::string("kv cache dtype must be float16 or float32, got ") +
                                    dtype_name(kv_dtype));
    if (cfg_.attn_scale == 0.0f) cfg_.attn_scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
    if (cfg_.rope_dims == 0) cfg_.rope_dims = cfg_.head_dim;

    DeviceGuard guard(device_);
    PYLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
        w_ = std::make_unique<DeviceWeights>(cfg_, host);
        kv_dim_ = static_cast<int64_t>(cfg_.n_head_kv) * cfg_.head_dim;
        n_slots_ = kv_blocks * block_size;
        if (n_slots_ > INT32_MAX)
            throw std::invalid_argument("KV cache of " + std::to_string(n_slots_) +
                                        " tokens exceeds the int32 slot index");
        max_blocks_ = (cfg_.n_ctx + block_size - 1) / block_size;
        kv_ = std::make_unique<BlockTables>(
            block_size, kv_blocks, [this](int32_t dst, int32_t src) { copy_block(dst, src); },
            "KV cache (cuda)");
        const size_t pool = static_cast<size_t>(cfg_.n_layer) * 2 * n_slots_ * kv_dim_ *
                            dtype_size(kv_dtype_);
        dev_alloc(kv_pool_, pool);
    } catch (...) {
        free_buffers();
        dev_free(kv_pool_);
        w_.reset();
        cudaStreamDestroy(stream_);
        throw;
    }
}

DeviceEngine::~DeviceEngine() {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    drop_graphs();
    free_buffers();
    dev_free(kv_pool_);
    w_.reset();
    cudaStreamDestroy(stream_);
}

void* DeviceEngine::k_cache(int il) const {
    return static_cast<char*>(kv_pool_) +
           static_cast<size_t>(2 * il) * n_slots_ * kv_dim_ * dtype_size(kv_dtype_);
}
void* DeviceEngine::v_cache(int il) const {
    return static_cast<char*>(kv_pool_) +
           static_cast<size_t>(2 * il + 1) * n_slots_ * kv_dim_ * dtype_size(kv_dtype_);
}

void DeviceEngine::copy_block(int32_t dst, int32_t src) {
    // Copy-on-write of one block in every layer's K and V pool (queued before the forward).
    const size_t es = dtype_size(kv_dtype_);
    const size_t bytes = static_cast<size_t>(kv_->block_size()) * kv_dim_ * es;
    for (int l = 0; l < 2 * cfg_.n_layer; ++l) {
        char* base = static_cast<char*>(kv_pool_) + static_cast<size_t>(l) * n_slots_ * kv_dim_ * es;
        PYLM_CUDA_CHECK(cudaMemcpyAsync(base + dst * bytes, base + src * bytes, bytes,
                                        cudaMemcpyDeviceToDevice, stream_));
    }
}

DeviceEngine::Layout DeviceEngine::layout(int64_t N, int64_t R, int64_t E) const {
    Layout l;
    l.ids = 0;
    l.pos = N;
    l.slot = 2 * N;
    l.rows = 3 * N;
    l.ctx = 3 * N + R;
    l.bt = 3 * N + R + E;
    l.end = l.bt + E * max_blocks_;
    return l;
}

void DeviceEngine::drop_graphs() {
    for (auto& g : graphs_) cudaGraphExecDestroy(g.second);
    graphs_.clear();
    seen_.clear();
    last_graph_S_ = 0;
}

void DeviceEngine::set_graphs_enabled(bool on) {
    DeviceGuard guard(device_);
    use_graphs_ = on;
    if (on) graph_error_.clear();
    else drop_graphs();
}

void DeviceEngine::free_buffers() {
    dev_free(x_);  // one allocation holds x_ ... act_
    h_ = proj_ = q_ = att_ = o_ = gu_ = act_ = nullptr;
    dev_free(logits_);
    dev_free(kv_tmp_);
    dev_free(ws_);
    dev_free(d_step_);
    if (h_step_) cudaFreeHost(h_step_);
    h_step_ = nullptr;
    cap_rows_ = cap_logits_ = cap_ints_ = cap_kv_tmp_ = 0;
    cap_ws_ = 0;
}

size_t DeviceEngine::paged_ws_bytes(int64_t S, int64_t tq, int64_t max_ctx) const {
    PagedAttnParams p;
    p.q_dtype = DType::F32;
    p.kv_dtype = kv_dtype_;
    p.S = static_cast<int>(S);
    p.Tq = static_cast<int>(tq);
    p.Hq = cfg_.n_head;
    p.Hkv = cfg_.n_head_kv;
    p.D = cfg_.head_dim;
    p.block_size = kv_->block_size();
    p.max_blocks_per_seq = static_cast<int>(max_blocks_);
    p.max_context_len = static_cast<int>(max_ctx);
    return paged_attn_workspace_bytes(p);
}

void DeviceEngine::ensure_capacity(int64_t N, int64_t R, int64_t E, size_t ws, int64_t kv_tmp) {
    const int64_t ints = layout(N, R, E).end;
    if (N <= cap_rows_ && R <= cap_logits_ && ints <= cap_ints_ && ws <= cap_ws_ &&
        kv_tmp <= cap_kv_tmp_)
        return;
    // Graphs hold the old pointers: drop them (they are re-captured on demand).
    PYLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    drop_graphs();
    const int64_t C = cfg_.n_embd, F = cfg_.n_ff;
    const int64_t qdim = static_cast<int64_t>(cfg_.n_head) * cfg_.head_dim;
    if (N > cap_rows_) {
        dev_free(x_);
        const int64_t rows = std::max<int64_t>(N, std::min<int64_t>(2 * cap_rows_, cfg_.n_ctx));
        const int64_t per_row = C + C + (qdim + 2 * kv_dim_) + qdim + qdim + C + 2 * F + F;
        dev_alloc(x_, static_cast<size_t>(rows * per_row) * sizeof(float));
        h_ = x_ + rows * C;
        proj_ = h_ + rows * C;
        q_ = proj_ + rows * (qdim + 2 * kv_dim_);
        att_ = q_ + rows * qdim;
        o_ = att_ + rows * qdim;
        gu_ = o_ + rows * C;
        act_ = gu_ + rows * 2 * F;
        cap_rows_ = rows;
    }
    if (R > cap_logits_) {
        dev_free(logits_);
        dev_alloc(logits_, static_cast<size_t>(R) * cfg_.n_vocab * sizeof(float));
        cap_logits_ = R;
    }
    if (ints > cap_ints_) {
        dev_free(d_step_);
        if (h_step_) cudaFreeHost(h_step_);
        h_step_ = nullptr;
        const int64_t n = std::max<int64_t>(ints, 2 * cap_ints_);
        dev_alloc(d_step_, static_cast<size_t>(n) * sizeof(int32_t));
        void* p = nullptr;
        PYLM_CUDA_CHECK(cudaMallocHost(&p, static_cast<size_t>(n) * sizeof(int32_t)));
        h_step_ = static_cast<int32_t*>(p);
        cap_ints_ = n;
    }
    if (ws > cap_ws_) {
        dev_free(ws_);
        dev_alloc(ws_, ws);
        cap_ws_ = ws;
    }
    if (kv_tmp > cap_kv_tmp_) {
        dev_free(kv_tmp_);
        dev_alloc(kv_tmp_, static_cast<size_t>(kv_tmp) * 2 * kv_dim_ * sizeof(float));
        cap_kv_tmp_ = kv_tmp;
    }
}

int64_t DeviceEngine::logits_rows(const std::vector<std::vector<int32_t>>& tokens,
                                  bool all_logits) const {
    int64_t n = 0;
    for (const auto& t : tokens)
        n += all_logits ? static_cast<int64_t>(t.size()) : (t.empty() ? 0 : 1);
    return n;
}

int64_t DeviceEngine::forward(const std::vector<int>& seq_ids,
                              const std::vector<std::vector<int32_t>>& tokens, bool all_logits,
                              float* logits) {
    if (seq_ids.size() != tokens.size())
        throw std::invalid_argument("forward: " + std::to_string(seq_ids.size()) +
                                    " sequence ids for " + std::to_string(tokens.size()) +
                                    " token lists");
    // ---- validate everything before touching any state (as the CPU engine) ----
    std::vector<int64_t> n_new(tokens.size());
    std::vector<Entry> entries;
    int64_t N = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
        int64_t start = kv_->seq_len(seq_ids[i]);  // out_of_range for an unknown id
        for (size_t j = 0; j < i; ++j)
            if (seq_ids[j] == seq_ids[i]) start += static_cast<int64_t>(tokens[j].size());
        n_new[i] = static_cast<int64_t>(tokens[i].size());
        if (start + n_new[i] > cfg_.n_ctx)
            throw std::invalid_argument("sequence " + std::to_string(seq_ids[i]) + ": " +
                                        std::to_string(start + n_new[i]) +
                                        " tokens exceed the context of " + std::to_string(cfg_.n_ctx));
        for (int32_t id : tokens[i])
            if (id < 0 || id >= cfg_.n_vocab)
                throw std::out_of_range("token id " + std::to_string(id) + " out of range [0, " +
                                        std::to_string(cfg_.n_vocab) + ")");
        if (n_new[i] > 0) entries.push_back(Entry{seq_ids[i], start, n_new[i], N});
        N += n_new[i];
    }
    if (N == 0) return 0;
    DeviceGuard guard(device_);
    last_graph_S_ = 0;  // the step buffer is about to change
    kv_->reserve(seq_ids, n_new);  // KVPoolExhausted with nothing changed; CoW copies queued

    const int64_t E = static_cast<int64_t>(entries.size());
    const int64_t R = all_logits ? N : E;
    int64_t uniform_tq = entries[0].n, max_ctx = 0;
    for (const Entry& e : entries) {
        if (e.n != uniform_tq) uniform_tq = 0;
        max_ctx = std::max(max_ctx, e.start + e.n);
    }
    const bool decode = uniform_tq == 1;  // then R == E == N and the rows are the identity
    const bool graph = decode && use_graphs_;
    if (graph) max_ctx = cfg_.n_ctx;  // a graph is sized once for any context length
    size_t ws = 0;
    int64_t kv_tmp = 0;
    if (uniform_tq >= 1 && uniform_tq <= kPagedMaxTq) {
        ws = paged_ws_bytes(E, uniform_tq, max_ctx);
    } else {
        for (const Entry& e : entries) {
            if (e.n <= kPagedMaxTq) ws = std::max(ws, paged_ws_bytes(1, e.n, e.start + e.n));
            else kv_tmp = std::max(kv_tmp, e.start + e.n);
        }
    }
    ensure_capacity(N, R, E, ws, kv_tmp);

    // ---- the step's inputs: one pinned buffer, one copy ----
    const Layout lay = layout(N, R, E);
    int32_t* hs = h_step_;
    int64_t r = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i].empty()) continue;
        int64_t start = kv_->seq_len(seq_ids[i]);
        for (size_t j = 0; j < i; ++j)
            if (seq_ids[j] == seq_ids[i]) start += static_cast<int64_t>(tokens[j].size());
        for (size_t j = 0; j < tokens[i].size(); ++j, ++r) {
            const int64_t pos = start + static_cast<int64_t>(j);
            hs[lay.ids + r] = tokens[i][j];
            hs[lay.pos + r] = static_cast<int32_t>(pos);
            hs[lay.slot + r] = static_cast<int32_t>(kv_->slot(seq_ids[i], pos));
        }
    }
    int64_t nr = 0;
    for (const Entry& e : entries) {
        if (all_logits)
            for (int64_t j = 0; j < e.n; ++j) hs[lay.rows + nr++] = static_cast<int32_t>(e.row0 + j);
        else
            hs[lay.rows + nr++] = static_cast<int32_t>(e.row0 + e.n - 1);
    }
    for (int64_t e = 0; e < E; ++e) {
        hs[lay.ctx + e] = static_cast<int32_t>(entries[e].start + entries[e].n);
        const std::vector<int32_t>& table = kv_->block_table(entries[e].seq);
        int32_t* bt = hs + lay.bt + e * max_blocks_;
        std::copy(table.begin(), table.end(), bt);
        std::fill(bt + table.size(), bt + max_blocks_, 0);
    }
    PYLM_CUDA_CHECK(cudaMemcpyAsync(d_step_, h_step_, static_cast<size_t>(lay.end) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, stream_));

    // ---- the model ----
    const bool identity_rows = all_logits || decode;
    cudaGraphExec_t exec = nullptr;
    if (graph) {
        auto it = graphs_.find(N);
        if (it != graphs_.end()) exec = it->second;
        else if (++seen_[N] >= 2) exec = capture(N, R, entries, uniform_tq, identity_rows, max_ctx);
    }
    if (exec) {
        PYLM_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
        last_graph_S_ = N;
    } else {
        run(N, R, entries, uniform_tq, identity_rows, max_ctx);
    }

    PYLM_CUDA_CHECK(cudaMemcpyAsync(logits, logits_, static_cast<size_t>(R) * cfg_.n_vocab * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
    PYLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (size_t i = 0; i < tokens.size(); ++i) kv_->commit(seq_ids[i], n_new[i]);
    return R;
}

cudaGraphExec_t DeviceEngine::capture(int64_t N, int64_t R, const std::vector<Entry>& entries,
                                      int64_t uniform_tq, bool identity_rows, int64_t max_ctx) {
    // The first sighting of a batch size ran eagerly (launchers' lazy initialization happens
    // outside capture); this one records the same launches. On any failure the graphs are
    // turned off for good (the reason is kept in graph_error_) and the caller runs eagerly.
    cudaGraph_t g = nullptr;
    std::string err;
    PYLM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    try {
        run(N, R, entries, uniform_tq, identity_rows, max_ctx);
    } catch (const std::exception& e) {
        err = e.what();
    }
    cudaError_t st = cudaStreamEndCapture(stream_, &g);
    if (err.empty() && st != cudaSuccess) err = std::string("capture: ") + cudaGetErrorString(st);
    cudaGraphExec_t exec = nullptr;
    if (err.empty()) {
        st = cudaGraphInstantiate(&exec, g, 0);
        if (st != cudaSuccess) err = std::string("instantiate: ") + cudaGetErrorString(st);
    }
    if (g) cudaGraphDestroy(g);
    if (!err.empty()) {
        cudaGetLastError();  // capture errors are not sticky: clear, run eagerly from now on
        graph_error_ = err;
        use_graphs_ = false;
        drop_graphs();
        return nullptr;
    }
    graphs_.emplace(N, exec);
    return exec;
}

double DeviceEngine::replay_last_decode(int iters) {
    if (last_graph_S_ == 0)
        throw std::runtime_error("replay_last_decode: the last forward was not a CUDA-graph decode "
                                 "step (run one with graphs enabled, at least twice per batch size)");
    if (iters < 1) throw std::invalid_argument("iters must be >= 1, got " + std::to_string(iters));
    DeviceGuard guard(device_);
    cudaGraphExec_t exec = graphs_.at(last_graph_S_);
    cudaEvent_t a, b;
    PYLM_CUDA_CHECK(cudaEventCreate(&a));
    PYLM_CUDA_CHECK(cudaEventCreate(&b));
    float ms = 0.f;
    cudaError_t st = cudaEventRecord(a, stream_);
    for (int i = 0; i < iters && st == cudaSuccess; ++i) st = cudaGraphLaunch(exec, stream_);
    if (st == cudaSuccess) st = cudaEventRecord(b, stream_);
    if (st == cudaSuccess) st = cudaEventSynchronize(b);
    if (st == cudaSuccess) st = cudaEventElapsedTime(&ms, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    PYLM_CUDA_CHECK(st);
    return ms * 1e-3 / iters;
}

}  // namespace cuda
}  // namespace pylm
