// Quantized matmul with fused dequantization — launcher contract (owner: cuda/qmatmul*.cu).
//
//   Y[M,N] (f32) (+)= X[M,K] · dequant(W)[N,K]^T
// W: the GGUF tensor bytes as stored in the file, N rows of K/block_size blocks each
//    (qtype = ggml type id from csrc/quant/blocks.h: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K;
//    also F16/BF16/F32 rows for convenience). No repacking: the engine uploads the file's bytes.
// X: [M,K] row-major, dtype F32, F16 or BF16. Y: [M,N] f32 row-major; accumulate adds into Y
//    (fuses the residual add), otherwise Y is overwritten.
// GEMV path for small M (decode, M <= 16), tiled GEMM path (dequantize tiles into shared memory,
// tensor cores) for prefill. Asynchronous on `stream`.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {

bool qmatmul_supported(int qtype);
void qmatmul(int qtype, const void* W, int64_t N, int64_t K, DType x_dtype, const void* X,
             int64_t M, float* Y, bool accumulate, cudaStream_t stream);

}  // namespace cuda
}  // namespace pylm
