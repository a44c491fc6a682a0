#include "engine/paged_attention.h"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/attention.h"

namespace pylm {

namespace {

AttnRows group_rows(const PagedAttnGroup& a) {
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
    return q;
}

int64_t first_key(const PagedAttnGroup& a) {
    return a.window > 0 && a.pos + 1 > a.window ? a.pos + 1 - a.window : 0;
}

}  // namespace

void paged_attention_rows(const PagedAttnGroup* a, int n) {
    if (n <= 0) return;
    if (n > kAttnRowsPerTask)
        throw std::invalid_argument("paged_attention_rows: " + std::to_string(n) +
                                    " rows, at most " + std::to_string(kAttnRowsPerTask));
    const int g = a[0].g;
    const int64_t gd = (static_cast<int64_t>(g) * a[0].D + 15) / 16 * 16;  // 64-byte aligned rows
    thread_local std::vector<float> store;
    store.resize(static_cast<size_t>(n * (gd + 2 * g) + 16));
    const uintptr_t base = reinterpret_cast<uintptr_t>(store.data());
    float* acc = reinterpret_cast<float*>((base + 63) & ~uintptr_t(63));
    float* m = acc + n * gd;
    float* l = m + n * g;
    AttnRows q[kAttnRowsPerTask];
    AttnState st[kAttnRowsPerTask];
    int64_t lo = first_key(a[0]), hi = a[0].pos;
    for (int i = 0; i < n; ++i) {
        q[i] = group_rows(a[i]);
        st[i] = {m + i * g, l + i * g, acc + i * gd};
        attn_state_init(q[i], st[i]);
        if (first_key(a[i]) < lo) lo = first_key(a[i]);
        if (a[i].pos > hi) hi = a[i].pos;
    }
    // Row i's keys [first_key, pos] in runs that end at page ends: the runs of a one-row walk.
    const int64_t bs = a[0].block_size, stride = bs * a[0].kv_dim;
    for (int64_t blk = lo / bs; blk * bs <= hi; ++blk)
        for (int i = 0; i < n; ++i) {
            const int64_t b = first_key(a[i]);
            const int64_t j0 = blk * bs > b ? blk * bs : b;
            const int64_t j1 = (blk + 1) * bs < a[i].pos + 1 ? (blk + 1) * bs : a[i].pos + 1;
            if (j0 >= j1) continue;
            const int64_t off = a[0].table[blk] * stride + (j0 % bs) * a[0].kv_dim + a[0].kv_offset;
            attn_fold_keys(q[i], a[0].k_pool + off, a[0].kv_dim, a[0].v_pool + off, a[0].kv_dim, j0,
                           j1 - j0, st[i]);
        }
    for (int i = 0; i < n; ++i) attn_state_finish(q[i], st[i], a[i].out, a[i].D);
}

}  // namespace pylm
