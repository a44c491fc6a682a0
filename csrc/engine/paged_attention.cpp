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

// Keys [j0, j1) of row a, all inside one chunk, folded into st in runs that end at page ends.
void fold_span(const AttnRows& q, const PagedAttnGroup& a, int64_t j0, int64_t j1, AttnState& st) {
    const int64_t bs = a.block_size, stride = bs * a.kv_dim;
    while (j0 < j1) {
        const int64_t blk = j0 / bs;
        const int64_t e = (blk + 1) * bs < j1 ? (blk + 1) * bs : j1;
        const int64_t off = a.table[blk] * stride + (j0 % bs) * a.kv_dim + a.kv_offset;
        attn_fold_keys(q, a.k_pool + off, a.kv_dim, a.v_pool + off, a.kv_dim, j0, e - j0, st);
        j0 = e;
    }
}

}  // namespace

int64_t paged_attention_chunks(const PagedAttnGroup& a) {
    return a.pos / kAttnKeyChunk - first_key(a) / kAttnKeyChunk + 1;
}

int64_t paged_attention_state_floats(const PagedAttnGroup& a) {
    return (static_cast<int64_t>(a.g) * a.D + 15) / 16 * 16 + 2 * a.g;
}

AttnState paged_attention_state(const PagedAttnGroup& a, float* mem) {
    const int64_t gd = paged_attention_state_floats(a) - 2 * a.g;
    return {mem + gd, mem + gd + a.g, mem};
}

void paged_attention_fold_chunk(const PagedAttnGroup& a, int64_t c, AttnState& st) {
    const AttnRows q = group_rows(a);
    attn_state_init(q, st);
    const int64_t b = first_key(a), c0 = (b / kAttnKeyChunk + c) * kAttnKeyChunk;
    const int64_t j0 = c0 > b ? c0 : b;
    const int64_t j1 = c0 + kAttnKeyChunk < a.pos + 1 ? c0 + kAttnKeyChunk : a.pos + 1;
    fold_span(q, a, j0, j1, st);
}

void paged_attention_merge(const PagedAttnGroup& a, const AttnState* chunks, int64_t n) {
    if (n == 1)  // one chunk: the plain fold's finish
        attn_state_finish(group_rows(a), chunks[0], a.out, a.D);
    else
        attn_states_merge(a.g, a.D, chunks, n, a.out, a.D);
}

void paged_attention_rows(const PagedAttnGroup* a, int n) {
    if (n <= 0) return;
    if (n > kAttnRowsPerTask)
        throw std::invalid_argument("paged_attention_rows: " + std::to_string(n) +
                                    " rows, at most " + std::to_string(kAttnRowsPerTask));
    // Each row's chunk states (paged_attention_state), rows one after another.
    const int64_t sf = paged_attention_state_floats(a[0]);
    int64_t first[kAttnRowsPerTask + 1] = {0};
    for (int i = 0; i < n; ++i) first[i + 1] = first[i] + paged_attention_chunks(a[i]);
    thread_local std::vector<float> store;
    thread_local std::vector<AttnState> states;
    store.resize(static_cast<size_t>(first[n] * sf + 16));
    states.resize(static_cast<size_t>(first[n]));
    const uintptr_t base = reinterpret_cast<uintptr_t>(store.data());
    float* mem = reinterpret_cast<float*>((base + 63) & ~uintptr_t(63));
    AttnRows q[kAttnRowsPerTask];
    int64_t lo = first_key(a[0]), hi = a[0].pos;
    for (int i = 0; i < n; ++i) {
        q[i] = group_rows(a[i]);
        for (int64_t c = first[i]; c < first[i + 1]; ++c) {
            states[c] = paged_attention_state(a[i], mem + c * sf);
            attn_state_init(q[i], states[c]);
        }
        if (first_key(a[i]) < lo) lo = first_key(a[i]);
        if (a[i].pos > hi) hi = a[i].pos;
    }
    // Page by page over all the rows (a page's K/V read from memory once for them); a row's
    // part of a page goes to the state of its chunk, so each chunk sees the runs
    // paged_attention_fold_chunk gives it (pages split at chunk ends too).
    const int64_t bs = a[0].block_size;
    for (int64_t s0 = lo; s0 <= hi;) {
        const int64_t pe = (s0 / bs + 1) * bs, ce = (s0 / kAttnKeyChunk + 1) * kAttnKeyChunk;
        const int64_t s1 = pe < ce ? pe : ce;
        for (int i = 0; i < n; ++i) {
            const int64_t b = first_key(a[i]);
            const int64_t j0 = s0 > b ? s0 : b;
            const int64_t j1 = s1 < a[i].pos + 1 ? s1 : a[i].pos + 1;
            if (j0 >= j1) continue;
            AttnState& st = states[first[i] + s0 / kAttnKeyChunk - b / kAttnKeyChunk];
            fold_span(q[i], a[i], j0, j1, st);
        }
        s0 = s1;
    }
    for (int i = 0; i < n; ++i)
        paged_attention_merge(a[i], states.data() + first[i], first[i + 1] - first[i]);
}

}  // namespace pylm
