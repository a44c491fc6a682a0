// Dispatcher for the fused softmax + cross-entropy (xent.h): rows across threads.
#include "train/xent.h"

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {
namespace train {

void softmax_xent(float* z, const int32_t* t, float* loss, int64_t N, int64_t V, float grad_scale,
                  bool grad, int nthreads) {
    if (N <= 0 || V <= 0) return;
    const int64_t grain = V >= 16384 ? 1 : 16384 / V;
    parallel_for(N, grain, nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(train::softmax_xent, z + b * V, t + b, loss + b, e - b, V, grad_scale, grad);
    });
}

}  // namespace train
}  // namespace pylm
