// Dispatchers for the optimizer updates (optim.h): fixed chunks across threads.
#include "train/optim.h"

#include <cmath>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {
namespace train {

namespace {
constexpr int64_t kChunk = 1 << 15;  // elements per task; fixed so sums are reproducible
}

void adamw(float* p, const float* grad, float* m, float* v, int64_t n, const AdamWArgs& a,
           int nthreads) {
    if (n <= 0) return;
    const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step));
    const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step));
    const float decay = 1.0f - a.lr * a.weight_decay;
    const float step_size = static_cast<float>(a.lr / bc1);
    const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
    parallel_for(n, kChunk, nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(train::adamw_chunk, p + b, grad + b, m + b, v + b, e - b, a.beta1, a.beta2,
                      a.eps, decay, step_size, inv_sqrt_bc2, a.grad_scale);
    });
}

void sgd(float* p, const float* grad, int64_t n, float lr, int nthreads) {
    if (n <= 0) return;
    parallel_for(n, kChunk, nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(train::sgd_chunk, p + b, grad + b, e - b, lr);
    });
}

double sum_squares(const float* x, int64_t n, int nthreads) {
    if (n <= 0) return 0.0;
    const int64_t nchunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(nchunks), 0.0);
    parallel_for(nchunks, 1, nthreads, [&](int64_t cb, int64_t ce, int) {
        for (int64_t c = cb; c < ce; ++c) {
            const int64_t b = c * kChunk, e = b + kChunk < n ? b + kChunk : n;
            double r = 0.0;
            switch (active_isa()) {
            case Isa::Avx512: r = avx512::train::sum_squares_chunk(x + b, e - b); break;
            case Isa::Avx2: r = avx2::train::sum_squares_chunk(x + b, e - b); break;
            default: r = ref::train::sum_squares_chunk(x + b, e - b); break;
            }
            part[c] = r;
        }
    });
    double total = 0.0;
    for (double s : part) total += s;
    return total;
}

void scale(float* x, int64_t n, float s, int nthreads) {
    if (n <= 0) return;
    parallel_for(n, kChunk, nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(train::scale_chunk, x + b, e - b, s);
    });
}

}  // namespace train
}  // namespace pylm
