#include "engine/paged_attention.h"

#include "kernels/attention.h"

namespace pylm {

void paged_attention_group(const PagedAttnGroup& a) {
    AttnRows q;
    q.q = a.q;
    q.ldq = a.D;
    q.rows = a.g;
    q.D = a.D;
    q.pos0 = a.pos;
    q.pos_step = 0;  // the g heads share one position
    q.scale = a.scale;
    q.softcap = a.softcap;
    q.window = a.window;
    q.causal = true;
    float m[kPagedAttnMaxG], l[kPagedAttnMaxG];
    alignas(64) float acc[kPagedAttnMaxG * kPagedAttnMaxD];
    AttnState st{m, l, acc};
    attn_state_init(q, st);
    const int64_t begin = a.window > 0 && a.pos + 1 > a.window ? a.pos + 1 - a.window : 0;
    const int64_t stride = static_cast<int64_t>(a.block_size) * a.kv_dim;
    for (int64_t j0 = begin; j0 <= a.pos;) {  // one contiguous run of keys per page
        const int64_t blk = j0 / a.block_size;
        const int64_t j1 = (blk + 1) * a.block_size < a.pos + 1 ? (blk + 1) * a.block_size : a.pos + 1;
        const int64_t off = a.table[blk] * stride + (j0 % a.block_size) * a.kv_dim + a.kv_offset;
        attn_fold_keys(q, a.k_pool + off, a.kv_dim, a.v_pool + off, a.kv_dim, j0, j1 - j0, st);
        j0 = j1;
    }
    attn_state_finish(q, st, a.out, a.D);
}

}  // namespace pylm
