// Forward pass: embeddings -> n_layer x (attention + feed-forward) -> norm -> logits, over a
// batch of N token rows. Activations are float32, [N, C]. Weights go through the quantized
// matmul (activations quantized to 8-bit blocks inside qmatmul).
#include "engine/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/thread_pool.h"
#include "engine/paged_attention.h"
#include "kernels/act.h"
#include "kernels/nn.h"
#include "quant/dequant.h"
#include "quant/qdot.h"
#include "quant/qmatmul.h"
#include "quant/quantize.h"

namespace pylm {

namespace {

int64_t row_bytes(const WeightRef& w) {
    const QTypeInfo* info = qtype_info(w.type);
    return w.ne0 / info->block_size * info->type_size;
}

void add_inplace(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

Engine::Engine(const ModelConfig& cfg, ModelWeights weights, int64_t kv_blocks, int block_size, int threads,
               bool repack)
    : cfg_(cfg),
      w_(std::move(weights)),
      kv_(cfg.n_layer, static_cast<int64_t>(cfg.n_head_kv) * cfg.head_dim, block_size, kv_blocks),
      threads_(threads),
      head_rows_(cfg.n_vocab),
      repack_(repack) {
    if (cfg_.n_head_kv <= 0 || cfg_.n_head % cfg_.n_head_kv != 0)
        throw std::invalid_argument("n_head=" + std::to_string(cfg_.n_head) +
                                    " is not a multiple of n_head_kv=" + std::to_string(cfg_.n_head_kv));
    if (cfg_.n_head / cfg_.n_head_kv > kPagedAttnMaxG || cfg_.head_dim > kPagedAttnMaxD)
        throw std::invalid_argument("unsupported attention geometry: group " +
                                    std::to_string(cfg_.n_head / cfg_.n_head_kv) + ", head_dim " +
                                    std::to_string(cfg_.head_dim));
    if (static_cast<int>(w_.layers.size()) != cfg_.n_layer)
        throw std::invalid_argument("weights have " + std::to_string(w_.layers.size()) +
                                    " layers, config says " + std::to_string(cfg_.n_layer));
    if (cfg_.attn_scale == 0.0f) cfg_.attn_scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
    if (cfg_.rope_dims == 0) cfg_.rope_dims = cfg_.head_dim;
    std::vector<WeightRef*> mats{&w_.output};
    for (LayerWeights& L : w_.layers)
        for (WeightRef* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) mats.push_back(w);
    packed_.resize(mats.size());
    for (size_t i = 0; i < mats.size(); ++i) pack(*mats[i], packed_[i]);
}

int64_t Engine::repacked_bytes() const {
    int64_t n = static_cast<int64_t>(screen_packed_.size());
    for (const auto& p : packed_) n += static_cast<int64_t>(p.size());
    return n;
}

void Engine::pack(WeightRef& w, std::vector<uint8_t>& store) {
    w.packed = nullptr;
    if (!repack_ || !w) return;
    const QDotKernels* kern = qdot_kernels(w.type);
    if (!kern || !kern->gemm_packed) return;
    const int64_t rb = row_bytes(w);
    store.resize(static_cast<size_t>(w.ne1 * rb));
    const uint8_t* src = static_cast<const uint8_t*>(w.data);
    uint8_t* dst = store.data();
    parallel_for(w.ne1, 256, threads_, [&](int64_t r0, int64_t r1, int) {
        qdot_pack_rows(w.type, src + r0 * rb, r1 - r0, w.ne0, dst + r0 * rb);
    });
    w.packed = dst;
}

void Engine::embed(const int32_t* ids, int64_t n, float* x) {
    const int64_t rb = row_bytes(w_.tok_embd);
    const char* base = static_cast<const char*>(w_.tok_embd.data);
    const int64_t C = cfg_.n_embd;
    for (int64_t i = 0; i < n; ++i) {
        dequantize_row(w_.tok_embd.type, base + ids[i] * rb, x + i * C, C);
        if (cfg_.embed_scale != 1.0f)
            for (int64_t c = 0; c < C; ++c) x[i * C + c] *= cfg_.embed_scale;
    }
}

void Engine::set_head_rows(int64_t n) {
    if (n < 1 || n > cfg_.n_vocab)
        throw std::invalid_argument("head_rows must be in [1, n_vocab=" +
                                    std::to_string(cfg_.n_vocab) + "], got " + std::to_string(n));
    head_rows_ = n;
}

void Engine::set_head_screen(int k) {
    if (k < 0 || k > cfg_.n_vocab)
        throw std::invalid_argument("head_screen must be in [0, n_vocab=" +
                                    std::to_string(cfg_.n_vocab) + "], got " + std::to_string(k));
    const WeightRef& out = w_.output;
    const int64_t K = out.ne0, V = out.ne1;
    if (k > 0 && screen_.empty()) {
        if (K % 32 != 0 || !can_dequantize(out.type))
            throw std::invalid_argument("head_screen: cannot screen an output head of type " +
                                        std::string(qtype_info(out.type)->name) + " with row length " +
                                        std::to_string(K));
        const int64_t qb = qrow_bytes(QType::Q4_0, K), rb = row_bytes(out);
        std::vector<uint8_t> buf(static_cast<size_t>(V * qb));
        const uint8_t* src = static_cast<const uint8_t*>(out.data);
        parallel_for(V, 256, threads_, [&](int64_t r0, int64_t r1, int) {
            std::vector<float> row(static_cast<size_t>(K));
            for (int64_t r = r0; r < r1; ++r) {
                dequantize_row(out.type, src + r * rb, row.data(), K);
                quantize_row(QType::Q4_0, row.data(), buf.data() + r * qb, K);
            }
        });
        screen_ = std::move(buf);
        screen_w_ = {screen_.data(), QType::Q4_0, K, V};
        pack(screen_w_, screen_packed_);
    }
    if (k == 0) {
        screen_.clear();
        screen_.shrink_to_fit();
        screen_packed_.clear();
        screen_packed_.shrink_to_fit();
        screen_w_ = {};
    }
    screen_k_ = k;
}

void Engine::screened_head(const float* x, int64_t R, float* logits) {
    const int64_t V = cfg_.n_vocab, H = head_rows_, C = cfg_.n_embd;
    const int64_t k = screen_k_ < H ? screen_k_ : H;
    linear(x, R, {{&screen_w_, nullptr, logits, H}});
    const WeightRef& out = w_.output;
    const int64_t rb = row_bytes(out);
    const uint8_t* src = static_cast<const uint8_t*>(out.data);
    std::vector<std::pair<float, int64_t>> top(static_cast<size_t>(k));
    std::vector<uint8_t> rows(static_cast<size_t>(k * rb));
    std::vector<float> exact(static_cast<size_t>(k));
    auto lower = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
        return a.first > b.first;  // min-heap on the screened logit
    };
    for (int64_t r = 0; r < R; ++r) {
        float* l = logits + r * V;
        // The k largest screened logits: a min-heap, replaced at its top by anything larger.
        for (int64_t i = 0; i < k; ++i) top[i] = {l[i], i};
        std::make_heap(top.begin(), top.end(), lower);
        for (int64_t i = k; i < H; ++i)
            if (l[i] > top.front().first) {
                std::pop_heap(top.begin(), top.end(), lower);
                top.back() = {l[i], i};
                std::push_heap(top.begin(), top.end(), lower);
            }
        for (int64_t j = 0; j < k; ++j)
            std::memcpy(rows.data() + j * rb, src + top[j].second * rb, static_cast<size_t>(rb));
        qmatmul(x + r * C, 1, rows.data(), out.type, k, C, exact.data(), k, 1);
        for (int64_t j = 0; j < k; ++j) l[top[j].second] = exact[j];
    }
}

void Engine::linear(const float* x, int64_t M, std::initializer_list<Proj> projs) {
    // x quantized once per activation format (act_[f - 1]; float weights read x itself), then
    // every product in one parallel region.
    if (projs.size() > kMaxProducts) throw std::logic_error("Engine::linear: too many projections");
    QProduct prods[kMaxProducts] = {};
    bool have[3] = {false, false, false};
    int n = 0;
    for (const Proj& p : projs) {
        const WeightRef& w = *p.w;
        const ActFormat f = act_format(w.type);
        const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
        int64_t stride = w.ne0 * 4;
        if (f != ActFormat::F32) {
            std::vector<uint8_t>& buf = act_[static_cast<int>(f) - 1];
            stride = act_row_bytes(f, w.ne0);
            if (!have[static_cast<int>(f)]) {
                buf.resize(static_cast<size_t>(M * stride));
                qmatmul_quantize(x, M, w.ne0, w.type, buf.data(), threads_);
                have[static_cast<int>(f)] = true;
            }
            act = buf.data();
        }
        // w.packed: used only while the active ISA has packed kernels (use_isa may change it)
        prods[n++] = {act, stride, w.data, w.type, p.rows > 0 ? p.rows : w.ne1, w.ne0, p.y, w.ne1,
                      w.packed};
    }
    qmatmul_preq_many(prods, n, M, threads_);
    int j = 0;
    for (const Proj& p : projs) {
        const QProduct& q = prods[j++];
        if (!p.bias || !*p.bias) continue;
        const float* bias = static_cast<const float*>(p.bias->data);
        for (int64_t m = 0; m < M; ++m) add_inplace(q.y + m * q.ldy, bias, q.N);
    }
}

void Engine::attention(int il, const std::vector<int>& row_seq, const std::vector<int64_t>& row_pos,
                       const float* q, float* out) {
    const int Hq = cfg_.n_head, Hkv = cfg_.n_head_kv, D = cfg_.head_dim, g = Hq / Hkv;
    const int64_t N = static_cast<int64_t>(row_seq.size());
    const LayerWeights& L = w_.layers[il];
    auto group = [&](int64_t r, int kvh) {  // row r's query heads of kv head kvh
        PagedAttnGroup a;
        a.q = q + r * Hq * D + static_cast<int64_t>(kvh) * g * D;
        a.out = out + r * Hq * D + static_cast<int64_t>(kvh) * g * D;
        a.k_pool = kv_.k_block(il, 0);
        a.v_pool = kv_.v_block(il, 0);
        a.table = kv_.block_table(row_seq[r]).data();
        a.kv_dim = kv_.kv_dim();
        a.kv_offset = static_cast<int64_t>(kvh) * D;
        a.pos = row_pos[r];
        a.window = L.sliding ? cfg_.window : 0;
        a.block_size = kv_.block_size();
        a.g = g;
        a.D = D;
        a.scale = cfg_.attn_scale;
        a.softcap = cfg_.attn_softcap;
        return a;
    };
    // Tasks: (kv head, run of up to `cr` consecutive rows of one sequence), the rows' K/V pages
    // read once per task (paged_attention_rows); the run length leaves >= 2 tasks per thread.
    const int nt = threads_ > 0 ? threads_ : default_threads();
    const int64_t per_head = (2 * nt + Hkv - 1) / Hkv;
    int64_t cr = (N + per_head - 1) / per_head;
    if (cr > kAttnRowsPerTask) cr = kAttnRowsPerTask;
    if (cr < 1) cr = 1;
    std::vector<std::pair<int64_t, int64_t>> runs;
    for (int64_t r = 0; r < N;) {
        int64_t e = r + 1;
        while (e < N && e - r < cr && row_seq[e] == row_seq[r]) ++e;
        runs.emplace_back(r, e);
        r = e;
    }
    const int64_t n_runs = static_cast<int64_t>(runs.size());
    // Fewer tasks than that (decode) over more than one key chunk: a task per (row, kv head,
    // chunk), each (row, kv head) merged by whoever folds its last chunk (the same chunk states
    // and merge as paged_attention_rows).
    std::vector<int64_t> first;  // (row, kv head) rh's chunks: [first[rh], first[rh + 1])
    if (n_runs * Hkv < 2 * nt) {
        first.assign(static_cast<size_t>(N * Hkv + 1), 0);
        for (int64_t rh = 0; rh < N * Hkv; ++rh)
            first[rh + 1] =
                first[rh] + paged_attention_chunks(group(rh / Hkv, static_cast<int>(rh % Hkv)));
    }
    const int64_t units = first.empty() ? 0 : first[N * Hkv];
    if (units > N * Hkv) {
        const int64_t sf = paged_attention_state_floats(group(0, 0));
        std::vector<float> store(static_cast<size_t>(units * sf + 16));
        const uintptr_t base = reinterpret_cast<uintptr_t>(store.data());
        float* mem = reinterpret_cast<float*>((base + 63) & ~uintptr_t(63));
        std::vector<AttnState> states(static_cast<size_t>(units));
        // A (row, kv head)'s chunks left to fold: the thread that folds the last one merges.
        std::vector<std::atomic<int64_t>> left(static_cast<size_t>(N * Hkv));
        for (int64_t rh = 0; rh < N * Hkv; ++rh) left[rh].store(first[rh + 1] - first[rh]);
        parallel_for(units, 1, threads_, [&](int64_t b, int64_t e, int) {
            for (int64_t u = b; u < e; ++u) {
                const int64_t rh =
                    std::upper_bound(first.begin(), first.end(), u) - first.begin() - 1;
                const PagedAttnGroup a = group(rh / Hkv, static_cast<int>(rh % Hkv));
                states[u] = paged_attention_state(a, mem + u * sf);
                paged_attention_fold_chunk(a, u - first[rh], states[u]);
                if (left[rh].fetch_sub(1, std::memory_order_acq_rel) == 1)
                    paged_attention_merge(a, states.data() + first[rh], first[rh + 1] - first[rh]);
            }
        });
        return;
    }
    parallel_for(n_runs * Hkv, 1, threads_, [&](int64_t b, int64_t e, int) {
        PagedAttnGroup rows[kAttnRowsPerTask];
        for (int64_t t = b; t < e; ++t) {
            const int kvh = static_cast<int>(t / n_runs);
            const auto [r0, r1] = runs[t % n_runs];
            for (int64_t r = r0; r < r1; ++r) rows[r - r0] = group(r, kvh);
            paged_attention_rows(rows, static_cast<int>(r1 - r0));
        }
    });
}

int64_t Engine::logits_rows(const std::vector<std::vector<int32_t>>& tokens, bool all_logits) const {
    int64_t n = 0;
    for (const auto& t : tokens) n += all_logits ? static_cast<int64_t>(t.size()) : (t.empty() ? 0 : 1);
    return n;
}

int64_t Engine::forward(const std::vector<int>& seq_ids, const std::vector<std::vector<int32_t>>& tokens,
                        bool all_logits, float* logits) {
    if (seq_ids.size() != tokens.size())
        throw std::invalid_argument("forward: " + std::to_string(seq_ids.size()) + " sequence ids for " +
                                    std::to_string(tokens.size()) + " token lists");
    // ---- validate everything before touching any state ----
    std::vector<int64_t> n_new(tokens.size());
    std::vector<int> row_seq;
    std::vector<int64_t> row_pos;
    std::vector<int32_t> ids;
    std::vector<int64_t> planned_len;  // per entry: length before its tokens
    for (size_t i = 0; i < tokens.size(); ++i) {
        int64_t start = kv_.seq_len(seq_ids[i]);  // throws out_of_range for an unknown id
        for (size_t j = 0; j < i; ++j)
            if (seq_ids[j] == seq_ids[i]) start += static_cast<int64_t>(tokens[j].size());
        n_new[i] = static_cast<int64_t>(tokens[i].size());
        if (start + n_new[i] > cfg_.n_ctx)
            throw std::invalid_argument("sequence " + std::to_string(seq_ids[i]) + ": " +
                                        std::to_string(start + n_new[i]) + " tokens exceed the context of " +
                                        std::to_string(cfg_.n_ctx));
        for (size_t j = 0; j < tokens[i].size(); ++j) {
            const int32_t id = tokens[i][j];
            if (id < 0 || id >= cfg_.n_vocab)
                throw std::out_of_range("token id " + std::to_string(id) + " out of range [0, " +
                                        std::to_string(cfg_.n_vocab) + ")");
            ids.push_back(id);
            row_seq.push_back(seq_ids[i]);
            row_pos.push_back(start + static_cast<int64_t>(j));
        }
    }
    const int64_t N = static_cast<int64_t>(ids.size());
    if (N == 0) return 0;
    kv_.reserve(seq_ids, n_new);  // throws KVPoolExhausted with nothing changed

    const int64_t C = cfg_.n_embd, Hq = cfg_.n_head, Hkv = cfg_.n_head_kv, D = cfg_.head_dim;
    const int64_t qdim = Hq * D, kvdim = Hkv * D, F = cfg_.n_ff;
    std::vector<float> x(N * C), h(N * C), q(N * qdim), k(N * kvdim), v(N * kvdim), att(N * qdim),
        o(N * C), gate(N * F), up(N * F);
    std::vector<int32_t> pos32(N);
    for (int64_t r = 0; r < N; ++r) pos32[r] = static_cast<int32_t>(row_pos[r]);

    // RoPE tables per distinct base (Gemma 3: local and global layers), built once per forward
    // and shared by q and k of every layer: [N, rope_dims] cos2 and sin2 (rope_tables).
    std::vector<std::pair<float, std::vector<float>>> rope_cache;
    auto rope_for = [&](float base) -> const float* {
        for (const auto& e : rope_cache)
            if (e.first == base) return e.second.data();
        const size_t n = static_cast<size_t>(N) * cfg_.rope_dims;
        rope_cache.emplace_back(base, std::vector<float>(2 * n));
        float* t = rope_cache.back().second.data();
        rope_tables(pos32.data(), N, cfg_.rope_dims, base, cfg_.rope_freq_scale, cfg_.rope_mode, t,
                    t + n, threads_);
        return t;
    };

    embed(ids.data(), N, x.data());
    for (int il = 0; il < cfg_.n_layer; ++il) {
        const LayerWeights& L = w_.layers[il];
        rmsnorm_f32(x.data(), static_cast<const float*>(L.attn_norm.data), h.data(), N, C, cfg_.eps, threads_);
        linear(h.data(), N, {{&L.wq, &L.bq, q.data()}, {&L.wk, &L.bk, k.data()}, {&L.wv, &L.bv, v.data()}});
        if (L.q_norm)
            rmsnorm_f32(q.data(), static_cast<const float*>(L.q_norm.data), q.data(), N * Hq, D, cfg_.eps, threads_);
        if (L.k_norm)
            rmsnorm_f32(k.data(), static_cast<const float*>(L.k_norm.data), k.data(), N * Hkv, D, cfg_.eps, threads_);
        const float* cos2 = rope_for(L.rope_base);
        const float* sin2 = cos2 + N * cfg_.rope_dims;
        rope_apply_f32(q.data(), cos2, sin2, N, static_cast<int>(Hq), static_cast<int>(D),
                       cfg_.rope_dims, cfg_.rope_mode, threads_);
        rope_apply_f32(k.data(), cos2, sin2, N, static_cast<int>(Hkv), static_cast<int>(D),
                       cfg_.rope_dims, cfg_.rope_mode, threads_);
        for (int64_t r = 0; r < N; ++r) {
            std::memcpy(kv_.k_row(il, row_seq[r], row_pos[r]), k.data() + r * kvdim, kvdim * sizeof(float));
            std::memcpy(kv_.v_row(il, row_seq[r], row_pos[r]), v.data() + r * kvdim, kvdim * sizeof(float));
        }
        attention(il, row_seq, row_pos, q.data(), att.data());
        linear(att.data(), N, {{&L.wo, &L.bo, o.data()}});
        if (L.post_attn_norm)
            rmsnorm_f32(o.data(), static_cast<const float*>(L.post_attn_norm.data), o.data(), N, C, cfg_.eps, threads_);
        add_inplace(x.data(), o.data(), N * C);

        rmsnorm_f32(x.data(), static_cast<const float*>(L.ffn_norm.data), h.data(), N, C, cfg_.eps, threads_);
        linear(h.data(), N, {{&L.w_gate, nullptr, gate.data()}, {&L.w_up, nullptr, up.data()}});
        if (cfg_.act == Activation::GeluTanh)
            geglu_f32(gate.data(), up.data(), gate.data(), N * F, threads_);
        else
            swiglu_f32(gate.data(), up.data(), gate.data(), N * F, threads_);
        linear(gate.data(), N, {{&L.w_down, nullptr, o.data()}});
        if (L.post_ffn_norm)
            rmsnorm_f32(o.data(), static_cast<const float*>(L.post_ffn_norm.data), o.data(), N, C, cfg_.eps, threads_);
        add_inplace(x.data(), o.data(), N * C);
    }
    for (size_t i = 0; i < tokens.size(); ++i) kv_.commit(seq_ids[i], n_new[i]);

    // ---- logits for the requested rows ----
    std::vector<int64_t> rows;
    int64_t r0 = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
        const int64_t n = n_new[i];
        if (all_logits)
            for (int64_t j = 0; j < n; ++j) rows.push_back(r0 + j);
        else if (n > 0)
            rows.push_back(r0 + n - 1);
        r0 += n;
    }
    const int64_t R = static_cast<int64_t>(rows.size());
    std::vector<float> sel(R * C);
    for (int64_t i = 0; i < R; ++i) std::memcpy(sel.data() + i * C, x.data() + rows[i] * C, C * sizeof(float));
    rmsnorm_f32(sel.data(), static_cast<const float*>(w_.output_norm.data), sel.data(), R, C, cfg_.eps, threads_);
    const int64_t V = cfg_.n_vocab, H = head_rows_;
    if (screen_k_ > 0)
        screened_head(sel.data(), R, logits);
    else
        linear(sel.data(), R, {{&w_.output, nullptr, logits, H}});
    for (int64_t r = 0; r < R; ++r) {
        float* l = logits + r * V;
        if (cfg_.final_softcap > 0.0f) {  // cap * tanh(x / cap)
            const float cap = cfg_.final_softcap;
            for (int64_t i = 0; i < H; ++i) l[i] /= cap;
            tanh_f32(l, l, H, threads_);
            for (int64_t i = 0; i < H; ++i) l[i] *= cap;
        }
        for (int64_t i = H; i < V; ++i) l[i] = -INFINITY;
    }
    return R;
}

}  // namespace pylm
