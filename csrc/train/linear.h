// Linear layer for training: y = x W^T (+ b), and its backward, on the f32 GEMM (matmul.h).
//
//   forward   y  [N, OUT] = x [N, IN] @ W [OUT, IN]^T (+ b [OUT])    GEMM with trans_b
//   backward  dx [N, IN]  = dy [N, OUT] @ W                           plain GEMM (= or +=)
//             dW [OUT, IN] += dy^T @ x  (or =)                         GEMM with trans_a, beta 1 / 0
//             db [OUT]     += sum over rows of dy
// W is stored [OUT, IN] (GGUF / PyTorch nn.Linear layout: each output's weights contiguous).
// Threading and ISA dispatch happen inside the GEMM; results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace pylm {
namespace train {

// b may be nullptr.
void linear_fwd(const float* x, const float* W, const float* b, float* y, int64_t N, int64_t IN,
                int64_t OUT, int nthreads = 0);
// dx (nullptr: skipped) is overwritten, or accumulated into when accumulate_dx; dW (nullptr:
// skipped) is accumulated into, or overwritten when !accumulate_dw (the first backward after
// zero_grad: no separate zero fill of the gradients); db (nullptr: skipped) is accumulated into.
void linear_bwd(const float* x, const float* W, const float* dy, float* dx, float* dW, float* db,
                int64_t N, int64_t IN, int64_t OUT, bool accumulate_dx, int nthreads = 0,
                bool accumulate_dw = true);

}  // namespace train
}  // namespace pylm
