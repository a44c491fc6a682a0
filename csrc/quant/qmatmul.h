// Quantized matmul: y = x @ W^T with W stored in a GGUF block format.
//
//   x  [M, K] float32, row-major
//   W  [N, K] in blocks: row n is K/bs consecutive blocks of type wt (bs = block size)
//   y  [M, ldy] float32: y[m * ldy + n] for n < N (ldy >= N)
//
// The activations are quantized once per call (Q8S / Q8K, see qdot.h), then the threads split
// the work over chunks of output rows N and, for M > 1, over chunks of activation rows; inside a
// chunk each weight row meets up to 8 (AVX-512) or 4 (AVX2) activation rows per pass, so the
// weights are read from memory once per M-chunk instead of once per token.
#pragma once
#include <cstdint>

#include "quant/blocks.h"
#include "quant/qdot.h"

namespace pylm {

// The full op. nthreads <= 0: the global default. Preconditions (checked by the bindings):
// qdot_supported(wt), K % block_size(wt) == 0, ldy >= N.
// w_packed: optionally W's packed copy (qdot.h), read instead of w where the active ISA has
// packed kernels (gemm_packed); the bits are the same either way.
void qmatmul(const float* x, int64_t M, const void* w, QType wt, int64_t N, int64_t K, float* y,
             int64_t ldy, int nthreads, const void* w_packed = nullptr);

// Quantize x [M, K] for weight type wt into act [M, act_row_bytes(act_format(wt), K)].
// Lets a caller reuse one quantized x for several matrices (q/k/v, gate/up).
void qmatmul_quantize(const float* x, int64_t M, int64_t K, QType wt, uint8_t* act, int nthreads);

// y = act @ W^T for activations already quantized by qmatmul_quantize (act_stride in bytes).
void qmatmul_preq(const uint8_t* act, int64_t act_stride, int64_t M, const void* w, QType wt,
                  int64_t N, int64_t K, float* y, int64_t ldy, int nthreads,
                  const void* w_packed = nullptr);

// One product of qmatmul_preq_many: y = act @ W^T, W [N, K] of type wt, act [M rows of
// act_stride bytes] already quantized for wt, y [M, ldy].
struct QProduct {
    const uint8_t* act;
    int64_t act_stride;
    const void* w;
    QType wt;
    int64_t N, K;
    float* y;
    int64_t ldy;
    const void* w_packed = nullptr;  // optional packed copy of w (as qmatmul's w_packed)
};

// Several products over the same M rows (q/k/v, gate/up) in ONE parallel region: their work
// items share the threads, so a decode step waits for the slowest thread once per group, not
// once per matrix. Same results as qmatmul_preq on each (the kernels and chunks are the same).
// count <= kMaxProducts (std::invalid_argument otherwise).
constexpr int kMaxProducts = 4;
void qmatmul_preq_many(const QProduct* products, int count, int64_t M, int nthreads);

// Bytes of one weight row of K values of type wt.
int64_t qrow_bytes(QType wt, int64_t K);

}  // namespace pylm
