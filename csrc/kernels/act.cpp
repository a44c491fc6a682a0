// Dispatchers for the elementwise activations (act.h): pick the active ISA and split arrays
// larger than one chunk across threads. Baseline translation unit.
#include "kernels/act.h"

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {

namespace {

// 64K floats = 256 KiB per chunk: big enough that the pool's wake-up cost is noise, small
// enough to spread an FFN activation (T x 4F) over every core. A multiple of 16 keeps chunk
// starts vector-aligned relative to the array start.
constexpr int64_t kChunk = 1 << 16;

}  // namespace

#define PYLM_ACT_UNARY(fn)                                                                        \
    void fn(const float* x, float* y, int64_t n, int nthreads) {                                  \
        parallel_for(n, kChunk, nthreads,                                                         \
                     [&](int64_t b, int64_t e, int) { PYLM_DISPATCH(fn, x + b, y + b, e - b); }); \
    }

#define PYLM_ACT_GATED(fn)                                                           \
    void fn(const float* gate, const float* up, float* y, int64_t n, int nthreads) { \
        parallel_for(n, kChunk, nthreads, [&](int64_t b, int64_t e, int) {           \
            PYLM_DISPATCH(fn, gate + b, up + b, y + b, e - b);                       \
        });                                                                          \
    }

PYLM_ACT_UNARY(exp_f32)
PYLM_ACT_UNARY(tanh_f32)
PYLM_ACT_UNARY(silu_f32)
PYLM_ACT_UNARY(gelu_f32)
PYLM_ACT_UNARY(gelu_erf_f32)
PYLM_ACT_GATED(swiglu_f32)
PYLM_ACT_GATED(geglu_f32)

#undef PYLM_ACT_UNARY
#undef PYLM_ACT_GATED

}  // namespace pylm
