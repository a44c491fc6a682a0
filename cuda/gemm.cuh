// GEMM on the GPU — launcher contract (owner: cuda/gemm*.cu).
//
// Row-major, BLAS-style transposes, fp32 accumulation:
//   C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C[M,N]
//   op(A) = A   when !trans_a (A is [M,K], lda >= K)   or  A^T when trans_a (A is [K,M], lda >= M)
//   op(B) = B   when !trans_b (B is [K,N], ldb >= N)   or  B^T when trans_b (B is [N,K], ldb >= K)
// A linear layer Y = X·W^T with W [N,K] (nn.Linear / GGUF layout) is trans_a=false, trans_b=true.
// A and B share `ab` (F32, F16 or BF16); C is F32 or the same dtype as ab. beta == 0 never reads C.
// Tensor cores (mma.sync; wgmma on sm_90a where built) for F16/BF16; F32 uses FFMA.
// Asynchronous on `stream`; throws std::invalid_argument for unsupported dtype combinations.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, DType ab,
          const void* A, int64_t lda, const void* B, int64_t ldb, float beta, DType c, void* C,
          int64_t ldc, cudaStream_t stream);

}  // namespace cuda
}  // namespace pylm
