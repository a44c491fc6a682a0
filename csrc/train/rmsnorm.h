// RMSNorm for training: forward that saves 1/rms per row, and its hand-derived backward.
//
//   forward:  r = 1 / sqrt(mean(x^2) + eps),  xhat = x * r,  y = xhat * w
//   backward: with g = dy * w (the gradient w.r.t. xhat),
//             dx = r * (g - xhat * mean(g * xhat))      (accumulated: dx += ...)
//             dw = sum over rows of dy * xhat            (accumulated: dw += ...)
// The mean term is the Jacobian of r: d r / d x_i = -r^3 x_i / C.
//
// Shapes: x, y, dy, dx [R, C]; w, dw [C]; rstd [R]. Rows are independent: the dispatcher threads
// over fixed chunks of rows, and dw sums per-chunk partials in chunk order, so results do not
// depend on the thread count.
#pragma once
#include <cstdint>

namespace pylm {
namespace train {

// y [R, C] = rmsnorm(x [R, C]) * w [C]; rstd [R] receives r.
void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t R, int64_t C,
                 float eps, int nthreads = 0);
// dx [R, C] += d/dx, dw [C] += d/dw, from dy [R, C], the forward's x, w and rstd.
void rmsnorm_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                 float* dw, int64_t R, int64_t C, int nthreads = 0);

}  // namespace train

// ---- per-ISA kernels over a range of rows (single-threaded) ----
// rmsnorm_bwd_rows adds this range's dw contribution into dw_part [C].
#define PYLM_TRAIN_RMSNORM_DECLARE(ns)                                                            \
    namespace ns {                                                                                \
    namespace train {                                                                             \
    void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t R, int64_t C, \
                     float eps);                                                                  \
    void rmsnorm_bwd_rows(const float* x, const float* w, const float* rstd, const float* dy,     \
                          float* dx, float* dw_part, int64_t R, int64_t C);                       \
    }                                                                                             \
    }
PYLM_TRAIN_RMSNORM_DECLARE(ref)
PYLM_TRAIN_RMSNORM_DECLARE(avx2)
PYLM_TRAIN_RMSNORM_DECLARE(avx512)
#undef PYLM_TRAIN_RMSNORM_DECLARE

}  // namespace pylm
