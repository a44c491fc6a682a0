// Dispatcher for the training RMSNorm (rmsnorm.h): fixed row chunks across threads.
#include "train/rmsnorm.h"

#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {
namespace train {

namespace {
// Rows per chunk. Fixed (not derived from the thread count) so that dw's summation order, and
// therefore the result, is the same for any number of threads.
constexpr int64_t kRowChunk = 32;
}  // namespace

void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t R, int64_t C,
                 float eps, int nthreads) {
    if (R <= 0 || C <= 0) return;
    parallel_for(R, kRowChunk, nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(train::rmsnorm_fwd, x + b * C, w, y + b * C, rstd + b, e - b, C, eps);
    });
}

void rmsnorm_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                 float* dw, int64_t R, int64_t C, int nthreads) {
    if (R <= 0 || C <= 0) return;
    const int64_t nchunks = (R + kRowChunk - 1) / kRowChunk;
    // Per-chunk dw partials [nchunks, C], kept per calling thread across calls: freeing it
    // lets malloc trim the heap, and the next call faults fresh (huge) pages in again.
    thread_local std::vector<float> part_buf;
    part_buf.assign(static_cast<size_t>(nchunks * C), 0.0f);
    float* part = part_buf.data();  // NOTE: a pointer; workers must not name the thread_local
    parallel_for(nchunks, 1, nthreads, [&](int64_t cb, int64_t ce, int) {
        for (int64_t c = cb; c < ce; ++c) {
            const int64_t b = c * kRowChunk, e = b + kRowChunk < R ? b + kRowChunk : R;
            PYLM_DISPATCH(train::rmsnorm_bwd_rows, x + b * C, w, rstd + b, dy + b * C, dx + b * C,
                          part + c * C, e - b, C);
        }
    });
    for (int64_t c = 0; c < nchunks; ++c)
        for (int64_t i = 0; i < C; ++i) dw[i] += part[c * C + i];
}

}  // namespace train
}  // namespace pylm
