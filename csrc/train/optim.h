// Optimizer updates over flat parameter / gradient arrays: AdamW, SGD, and the pieces of
// global-norm gradient clipping (sum of squares, scale).
//
// AdamW (Loshchilov & Hutter 2019, decoupled weight decay), in PyTorch's exact order of
// operations (torch.optim.AdamW, foreach=False), with the gradient multiplied by grad_scale
// first (clipping folded in):
//   g  = grad * grad_scale
//   p  = p * (1 - lr * weight_decay)
//   m  = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g^2
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),   bc_i = 1 - beta_i^step
// SGD: p -= lr * grad.
//
// Shapes: p, grad, m, v are [n]. sum_squares sums fixed chunks in double and adds the
// partials in chunk order: the same value for any thread count.
#pragma once
#include <cstdint>

namespace pylm {
namespace train {

struct AdamWArgs {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;  // 1 for the first update
    float grad_scale;
};

void adamw(float* p, const float* grad, float* m, float* v, int64_t n, const AdamWArgs& a,
           int nthreads = 0);
void sgd(float* p, const float* grad, int64_t n, float lr, int nthreads = 0);
double sum_squares(const float* x, int64_t n, int nthreads = 0);
void scale(float* x, int64_t n, float s, int nthreads = 0);

}  // namespace train

// Per-ISA kernels over [0, n). adamw_chunk takes the step's derived constants:
// decay = 1 - lr * wd, step_size = lr / bc1, inv_sqrt_bc2 = 1 / sqrt(bc2).
#define PYLM_TRAIN_OPTIM_DECLARE(ns)                                                        \
    namespace ns {                                                                          \
    namespace train {                                                                       \
    void adamw_chunk(float* p, const float* grad, float* m, float* v, int64_t n, float b1,  \
                     float b2, float eps, float decay, float step_size, float inv_sqrt_bc2, \
                     float grad_scale);                                                     \
    void sgd_chunk(float* p, const float* grad, int64_t n, float lr);                       \
    double sum_squares_chunk(const float* x, int64_t n);                                    \
    void scale_chunk(float* x, int64_t n, float s);                                         \
    }                                                                                       \
    }
PYLM_TRAIN_OPTIM_DECLARE(ref)
PYLM_TRAIN_OPTIM_DECLARE(avx2)
PYLM_TRAIN_OPTIM_DECLARE(avx512)
#undef PYLM_TRAIN_OPTIM_DECLARE

}  // namespace pylm
