// Fused softmax + cross-entropy over the vocabulary, with its gradient written in place.
//
//   loss[n]   = logsumexp(z[n]) - z[n, t[n]]
//   dz[n, v]  = (softmax(z[n])[v] - [v == t[n]]) * grad_scale
// No probability tensor is stored: the row of logits is overwritten by its gradient (llm.c's
// fused classifier). Rows whose target is negative are ignored: loss 0 and gradient 0.
// grad_scale is usually 1 / (number of counted rows) so the gradient is that of the mean loss.
//
// Shapes: z [N, V] (in: logits, out: dz when grad), t [N] int32 in [0, V) or < 0, loss [N].
// Sums run in float vectors within blocks of 1024 logits and in double across blocks.
#pragma once
#include <cstdint>

namespace pylm {
namespace train {

// Without grad, z is left unchanged (the evaluation pass).
void softmax_xent(float* z, const int32_t* t, float* loss, int64_t N, int64_t V, float grad_scale,
                  bool grad, int nthreads = 0);

}  // namespace train

#define PYLM_TRAIN_XENT_DECLARE(ns)                                                  \
    namespace ns {                                                                   \
    namespace train {                                                                \
    void softmax_xent(float* z, const int32_t* t, float* loss, int64_t N, int64_t V, \
                      float grad_scale, bool grad);                                  \
    }                                                                                \
    }
PYLM_TRAIN_XENT_DECLARE(ref)
PYLM_TRAIN_XENT_DECLARE(avx2)
PYLM_TRAIN_XENT_DECLARE(avx512)
#undef PYLM_TRAIN_XENT_DECLARE

}  // namespace pylm
