// Linear layer forward / backward (linear.h) as three GEMM calls. Baseline TU: the GEMM
// dispatches per ISA itself.
#include "train/linear.h"

#include "core/thread_pool.h"
#include "kernels/matmul.h"

namespace pylm {
namespace train {

void linear_fwd(const float* x, const float* W, const float* b, float* y, int64_t N, int64_t IN,
                int64_t OUT, int nthreads) {
    if (N <= 0 || OUT <= 0) return;
    // y [N, OUT] = x [N, IN] @ (W [OUT, IN])^T
    GemmArgs g{x, W, y, N, OUT, IN, IN, IN, OUT, false, true, 0.0f};
    gemm_f32(g, nthreads);
    if (b) {
        parallel_for(N, 64, nthreads, [&](int64_t r0, int64_t r1, int) {
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t o = 0; o < OUT; ++o) y[r * OUT + o] += b[o];
        });
    }
}

void linear_bwd(const float* x, const float* W, const float* dy, float* dx, float* dW, float* db,
                int64_t N, int64_t IN, int64_t OUT, bool accumulate_dx, int nthreads,
                bool accumulate_dw) {
    if (N <= 0) return;
    if (dx) {
        // dx [N, IN] = dy [N, OUT] @ W [OUT, IN]
        GemmArgs g{dy, W, dx, N, IN, OUT, OUT, IN, IN, false, false, accumulate_dx ? 1.0f : 0.0f};
        gemm_f32(g, nthreads);
    }
    if (dW) {
        // dW [OUT, IN] (+)= (dy [N, OUT])^T @ x [N, IN]
        GemmArgs g{dy, x, dW, OUT, IN, N, OUT, IN, IN, true, false, accumulate_dw ? 1.0f : 0.0f};
        gemm_f32(g, nthreads);
    }
    if (db) {
        parallel_for(OUT, 256, nthreads, [&](int64_t o0, int64_t o1, int) {
            for (int64_t r = 0; r < N; ++r)
                for (int64_t o = o0; o < o1; ++o) db[o] += dy[r * OUT + o];
        });
    }
}

}  // namespace train
}  // namespace pylm
