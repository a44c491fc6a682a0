// Internal to the qmatmul area: launchers of cuda/qmatmul_kernels.cu, used by cuda/qmatmul.cu.
// QT is a ggml type id (QType) of a block format; row_bytes = K / block_size * type_size.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {
namespace qmm_detail {

// Largest M served by the GEMV kernel; larger M dequantizes W to f16/bf16 and runs the GEMM.
constexpr int kGemvMaxM = 8;

// Y[M,N] (+)= X[M,K] · W^T; X (F32/F16/BF16) 16-byte aligned, W 16-byte aligned.
template <int QT>
void launch_qgemv(const uint8_t* W, int64_t row_bytes, int N, int K, DType xdt, const void* X,
                  int M, float* Y, bool accumulate, cudaStream_t stream);
// out[N,K] (F16 or BF16, 16-byte aligned) = dequant(W).
template <int QT>
void launch_dequant16(const uint8_t* W, int64_t row_bytes, int N, int K, DType out_dt, void* out,
                      cudaStream_t stream);
// dst[i] = src[i] converted (F32/F16/BF16 either side), i < n.
void launch_convert(DType src_dt, const void* src, DType dst_dt, void* dst, int64_t n,
                    cudaStream_t stream);

}  // namespace qmm_detail
}  // namespace cuda
}  // namespace pylm
