// The GPU forward pass over the step buffer already on the device (see device_engine.h):
// embeddings -> n_layer x (attention + feed-forward) -> norm -> logits, activations f32 [N, C].
// Per layer: qkv qmatmul(s), qkv_post, attention, wo, add_rmsnorm, gate/up qmatmul(s), act,
// down, add_rmsnorm (residual + the next layer's input norm). Everything is asynchronous on
// stream_ and capturable in a CUDA graph (no host synchronization, no allocation).
#include "attention.cuh"
#include "elementwise.cuh"
#include "engine/device_engine.h"
#include "engine/engine_kernels.cuh"
#include "qmatmul.cuh"

namespace pylm {
namespace cuda {

void DeviceEngine::project(const std::vector<DevGroup>& groups, const std::vector<int64_t>& widths,
                           int64_t N, float* out, float** member, int64_t* ld) {
    // Group g writes Y_g [N, N_g] at out + N * col0_g; member j of it starts at column
    // (col_j - col0_g) of Y_g.
    for (const DevGroup& g : groups) {
        float* y = out + N * g.col0;
        qmatmul(g.w.qtype, g.w.ptr, g.w.N, g.w.K, DType::F32, h_, N, y, false, stream_);
        int64_t col = 0;
        for (int j = g.first; j < g.first + g.count; ++j) {
            member[j] = y + col;
            ld[j] = g.w.N;
            col += widths[j];
        }
    }
}

void DeviceEngine::attention(int il, const Layout& lay, const std::vector<Entry>& entries,
                             int64_t uniform_tq, int64_t max_ctx) {
    const DevLayer& L = w_->layers[il];
    const int64_t qdim = static_cast<int64_t>(cfg_.n_head) * cfg_.head_dim;
    const int window = L.sliding ? static_cast<int>(cfg_.window) : 0;
    PagedAttnParams p;
    p.q_dtype = DType::F32;
    p.kv_dtype = kv_dtype_;
    p.k_cache = k_cache(il);
    p.v_cache = v_cache(il);
    p.Hq = cfg_.n_head;
    p.Hkv = cfg_.n_head_kv;
    p.D = cfg_.head_dim;
    p.block_size = kv_->block_size();
    p.max_blocks_per_seq = static_cast<int>(max_blocks_);
    p.scale = cfg_.attn_scale;
    p.window = window;
    p.softcap = cfg_.attn_softcap;
    p.workspace = ws_;
    if (uniform_tq >= 1 && uniform_tq <= kPagedMaxTq) {  // one launch for the whole batch
        p.q = q_;
        p.o = att_;
        p.block_tables = d_step_ + lay.bt;
        p.context_lens = d_step_ + lay.ctx;
        p.S = static_cast<int>(entries.size());
        p.Tq = static_cast<int>(uniform_tq);
        p.max_context_len = static_cast<int>(max_ctx);
        paged_attn_decode(p, stream_);
        return;
    }
    for (size_t e = 0; e < entries.size(); ++e) {
        const Entry& en = entries[e];
        const float* q = q_ + en.row0 * qdim;
        float* o = att_ + en.row0 * qdim;
        const int32_t* table = d_step_ + lay.bt + static_cast<int64_t>(e) * max_blocks_;
        const int64_t Tk = en.start + en.n;
        if (en.n <= kPagedMaxTq) {
            p.q = q;
            p.o = o;
            p.block_tables = table;
            p.context_lens = d_step_ + lay.ctx + e;
            p.S = 1;
            p.Tq = static_cast<int>(en.n);
            p.max_context_len = static_cast<int>(Tk);
            paged_attn_decode(p, stream_);
            continue;
        }
        // Prefill: this sequence's whole context (cached prefix + the new rows, already written
        // by qkv_post) as contiguous f32, then causal flash attention with q_offset = start.
        float* k = kv_tmp_;
        float* v = kv_tmp_ + Tk * kv_dim_;
        gather_kv(kv_dtype_, k_cache(il), v_cache(il), table, kv_->block_size(), Tk, kv_dim_, k, v,
                  stream_);
        FlashAttnParams f;
        f.dtype = DType::F32;
        f.q = q;
        f.k = k;
        f.v = v;
        f.o = o;
        f.B = 1;
        f.Tq = static_cast<int>(en.n);
        f.Tk = static_cast<int>(Tk);
        f.Hq = cfg_.n_head;
        f.Hkv = cfg_.n_head_kv;
        f.D = cfg_.head_dim;
        f.q_stride_t = f.o_stride_t = qdim;
        f.q_stride_b = f.o_stride_b = en.n * qdim;
        f.k_stride_t = f.v_stride_t = kv_dim_;
        f.k_stride_b = f.v_stride_b = Tk * kv_dim_;
        f.scale = cfg_.attn_scale;
        f.causal = true;
        f.q_offset = static_cast<int>(en.start);
        f.window = window;
        f.softcap = cfg_.attn_softcap;
        flash_attn_fwd(f, stream_);
    }
}

void DeviceEngine::run(int64_t N, int64_t R, const std::vector<Entry>& entries, int64_t uniform_tq,
                       bool identity_rows, int64_t max_ctx) {
    const int64_t C = cfg_.n_embd, F = cfg_.n_ff, D = cfg_.head_dim;
    const int64_t qdim = static_cast<int64_t>(cfg_.n_head) * D;
    const float eps = cfg_.eps;
    const Layout lay = layout(N, R, static_cast<int64_t>(entries.size()));
    const std::vector<int64_t> qkv_w = {qdim, kv_dim_, kv_dim_}, gu_w = {F, F};
    const DeviceWeights& W = *w_;

    embedding(W.tok_embd.qtype, W.tok_embd.ptr, C, d_step_ + lay.ids, N, cfg_.embed_scale,
              DType::F32, x_, stream_);
    add_rmsnorm(x_, nullptr, nullptr, nullptr, W.layers[0].attn_norm, h_, nullptr, N, C, eps, stream_);
    for (int il = 0; il < cfg_.n_layer; ++il) {
        const DevLayer& L = W.layers[il];
        float* m[3];
        int64_t ld[3];
        project(L.qkv, qkv_w, N, proj_, m, ld);
        QkvPostParams p;
        p.q = m[0];
        p.k = m[1];
        p.v = m[2];
        p.ldq = ld[0];
        p.ldk = ld[1];
        p.ldv = ld[2];
        p.bq = L.bq;
        p.bk = L.bk;
        p.bv = L.bv;
        p.q_norm = L.q_norm;
        p.k_norm = L.k_norm;
        p.eps = eps;
        p.pos = d_step_ + lay.pos;
        p.slot = d_step_ + lay.slot;
        p.q_out = q_;
        p.k_cache = k_cache(il);
        p.v_cache = v_cache(il);
        p.kv_dtype = kv_dtype_;
        p.N = static_cast<int>(N);
        p.Hq = cfg_.n_head;
        p.Hkv = cfg_.n_head_kv;
        p.D = cfg_.head_dim;
        p.rot_dim = cfg_.rope_dims;
        p.neox = cfg_.rope_mode == 2;
        p.rope_base = L.rope_base;
        p.freq_scale = cfg_.rope_freq_scale;
        qkv_post(p, stream_);
        attention(il, lay, entries, uniform_tq, max_ctx);
        qmatmul(L.wo.qtype, L.wo.ptr, L.wo.N, L.wo.K, DType::F32, att_, N, o_, false, stream_);
        add_rmsnorm(x_, o_, L.bo, L.post_attn_norm, L.ffn_norm, h_, nullptr, N, C, eps, stream_);

        project(L.gate_up, gu_w, N, gu_, m, ld);
        if (cfg_.act == Activation::GeluTanh)
            geglu(DType::F32, m[0], m[1], ld[0], act_, N, F, stream_);
        else
            swiglu(DType::F32, m[0], m[1], ld[0], act_, N, F, stream_);
        qmatmul(L.w_down.qtype, L.w_down.ptr, L.w_down.N, L.w_down.K, DType::F32, act_, N, o_,
                false, stream_);
        const bool last = il + 1 == cfg_.n_layer;
        // Residual + the next layer's attention norm; after the last layer, the output norm of
        // the rows whose logits were asked for (gathered into h_[0, R)).
        add_rmsnorm(x_, o_, nullptr, L.post_ffn_norm,
                    last ? W.output_norm : W.layers[il + 1].attn_norm, h_,
                    last && !identity_rows ? d_step_ + lay.rows : nullptr, last ? R : N, C, eps,
                    stream_);
    }
    qmatmul(W.output.qtype, W.output.ptr, W.output.N, W.output.K, DType::F32, h_, R, logits_, false,
            stream_);
    if (cfg_.final_softcap > 0.0f)
        softcap(logits_, R * static_cast<int64_t>(cfg_.n_vocab), cfg_.final_softcap, stream_);
}

}  // namespace cuda
}  // namespace pylm
