// Dispatcher for the training attention (attention.h): forward tasks are (sequence, query head),
// backward tasks are (sequence, kv head) so that each task owns its dK / dV rows outright (no
// atomics, no reduction, results independent of the thread count).
#include "train/attention.h"

#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {
namespace train {

namespace {
// Per-thread scratch reused across calls: a fresh vector of a few hundred KiB per call would be
// a fresh mmap, page faults and kernel page clearing every step.
float* scratch(size_t floats) {
    thread_local std::vector<float> buf;
    if (buf.size() < floats) buf.resize(floats);
    return buf.data();
}
}  // namespace

void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* o,
                   float* lse, int nthreads) {
    if (s.B <= 0 || s.T <= 0 || s.H <= 0) return;
    const int G = s.H / s.Hkv;
    parallel_for(s.B * s.H, 1, nthreads, [&](int64_t b0, int64_t e0, int) {
        float* buf = scratch(static_cast<size_t>(attn_fwd_scratch(s.T, s.D)));
        for (int64_t task = b0; task < e0; ++task) {
            const int64_t b = task / s.H;
            const int h = static_cast<int>(task % s.H), kvh = h / G;
            const int64_t row0 = b * s.T;
            PYLM_DISPATCH(train::attn_fwd_head, s, q + row0 * s.ld + h * s.D,
                          k + row0 * s.ld + kvh * s.D, v + row0 * s.ld + kvh * s.D,
                          o + row0 * s.ldo + h * s.D, lse + (b * s.H + h) * s.T, buf);
        }
    });
}

void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v,
                   const float* o, const float* lse, const float* dout, float* dq, float* dk,
                   float* dv, int nthreads) {
    if (s.B <= 0 || s.T <= 0 || s.H <= 0) return;
    const int G = s.H / s.Hkv;
    parallel_for(s.B * s.Hkv, 1, nthreads, [&](int64_t b0, int64_t e0, int) {
        float* buf = scratch(static_cast<size_t>(attn_bwd_scratch(s.T, s.D)));
        for (int64_t task = b0; task < e0; ++task) {
            const int64_t b = task / s.Hkv;
            const int kvh = static_cast<int>(task % s.Hkv), h0 = kvh * G;
            const int64_t row0 = b * s.T;
            PYLM_DISPATCH(train::attn_bwd_kv, s, G, q + row0 * s.ld + h0 * s.D,
                          k + row0 * s.ld + kvh * s.D, v + row0 * s.ld + kvh * s.D,
                          o + row0 * s.ldo + h0 * s.D, lse + (b * s.H + h0) * s.T,
                          dout + row0 * s.ldo + h0 * s.D, dq + row0 * s.ld + h0 * s.D,
                          dk + row0 * s.ld + kvh * s.D, dv + row0 * s.ld + kvh * s.D, buf);
        }
    });
}

}  // namespace train
}  // namespace pylm
